"""Files -> features: one file (:func:`extract_file`) or many, in parallel, to ``.npy`` files
(:func:`extract_to_directory`, what ``musetag features`` runs)."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musetag.audio.io import AudioSource, describe_source, load_audio
from musetag.errors import AudioError, ConfigError, MusetagError
from musetag.features.compute import compute_features
from musetag.features.presets import FeatureConfig, get_preset
from musetag.outputs import DISK_FULL_ERRNOS, removed_on_error

log = logging.getLogger(__name__)

#: file extensions picked up when a directory is given
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".m4a", ".mp4", ".aac", ".wma")


def _as_config(config: FeatureConfig | str) -> FeatureConfig:
    return get_preset(config) if isinstance(config, str) else config


def extract_file(
    source: AudioSource,
    config: FeatureConfig | str,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``source`` (path, bytes or file object), resample, trim if configured, and compute features.

    ``config`` is a :class:`FeatureConfig` or a preset name. Shapes as
    :func:`musetag.features.compute_features`.
    """
    config = _as_config(config)
    audio, sr = load_audio(
        source,
        sample_rate=config.sample_rate,
        mono=config.mono,
        offset=offset,
        duration=duration,
        resample_method=config.resample_method,
        decoder=config.decoder,
    )
    try:
        return compute_features(audio, sr, config)
    except AudioError as exc:  # e.g. no samples left after resampling: the message names the file, as decoding's do
        raise AudioError(f"{describe_source(source)}: {exc}") from None


def find_audio_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus audio files (by extension) found recursively in given directories.

    Missing paths, and links inside a directory whose target is gone, are kept, so that they are
    reported as errors rather than silently dropped.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*")
                       if (p.is_file() or (p.is_symlink() and not p.exists())) and p.suffix.lower() in AUDIO_EXTENSIONS)
            )
        else:
            found.append(path)
    return found


@dataclass
class ExtractionReport:
    """What :func:`extract_to_directory` did: written files and failures (path, message)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _output_paths(files: Sequence[Path], roots: Sequence[Path], out_dir: Path) -> list[Path]:
    """Mirror each file's path below the directory it was found in (``a/b.mp3`` -> ``OUT/a/b.npy``)."""
    outs = []
    for f in files:
        rel = Path(f.name)
        for root in roots:
            try:
                rel = f.relative_to(root)
                break
            except ValueError:
                continue
        outs.append(out_dir / rel.with_suffix(".npy"))
    # two inputs with the same name from different places (or extensions) must not overwrite each other, nor
    # the renamed one another input's own name (a.wav, a.flac, a-1.wav: a-1.npy was written twice)
    taken = set(outs)
    first: set[Path] = set()
    unique = []
    for f, out in zip(files, outs):
        if out not in first:
            first.add(out)
            unique.append(out)
            continue
        n = 1
        while out.with_name(f"{out.stem}-{n}{out.suffix}") in taken:
            n += 1
        renamed = out.with_name(f"{out.stem}-{n}{out.suffix}")
        taken.add(renamed)
        unique.append(renamed)
        log.warning("%s: another input also maps to %s; its features go to %s", f, out.name, renamed.name)
    return unique


def iter_extract(
    sources: Iterable[AudioSource],
    config: FeatureConfig | str,
    *,
    workers: int = 1,
) -> Iterator[tuple[AudioSource, np.ndarray | None, str | None]]:
    """Features for many sources, in order: yields ``(source, features, None)`` or ``(source, None, error)``.

    ``workers > 1`` computes files in that many worker processes (:func:`musetag.workers.ordered_map`:
    forked, one thread each; two threads reach only ~1.35x one core, the decoders' per-frame Python
    holding the GIL). Sources that are not paths (bytes, file objects) are computed here, in
    their place. At most ``2 * workers + 1`` results are held at once, so any number of files streams
    through in bounded memory. A bad file yields its error message and the others go on; a file that
    crashes a worker's decoder yields an error too.
    """
    config = _as_config(config)
    if workers <= 1:
        for source in sources:
            yield _extract_safe(source, config)
        return
    from musetag.workers import CRASHED, is_path, ordered_map

    outcomes = ordered_map(
        _extract_in_worker, sources, workers=workers, initializer=_init_extract_worker, initargs=(config,),
        in_worker=is_path,
    )
    try:
        for source, outcome, in_worker in outcomes:
            if not in_worker:
                yield _extract_safe(source, config)
            elif outcome is CRASHED:
                why = "the decoder crashed on this file (damaged or unsupported format)"
                yield source, None, f"{describe_source(source)}: {why}"
            elif isinstance(outcome, BaseException):
                yield source, None, f"{describe_source(source)}: unexpected {type(outcome).__name__}: {outcome}"
            else:
                yield (source, *outcome)
    finally:
        outcomes.close()  # closed early (a full disk): the workers are stopped now, not when collected


def _extract_safe(source: AudioSource, config: FeatureConfig) -> tuple:
    try:
        return source, extract_file(source, config), None
    except MusetagError as exc:
        return source, None, str(exc)
    except Exception as exc:  # a decoder crash on one file must not stop the batch
        return source, None, f"{describe_source(source)}: unexpected {type(exc).__name__}: {exc}"


_CONFIG: list[FeatureConfig] = []


def _init_extract_worker(config: FeatureConfig) -> None:
    from musetag.workers import die_with_parent

    die_with_parent()
    # parallelism comes from the files: one OpenMP thread per worker, set through torch when the parent had
    # imported it (the worker inherits it); the numpy front end needs no torch, so it is not imported for this
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    _CONFIG[:] = [config]


def _extract_in_worker(source) -> tuple[np.ndarray | None, str | None]:
    return _extract_safe(source, _CONFIG[0])[1:]


def _save(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with removed_on_error(tmp):  # nor its partial temporary (a full disk would collect one per remaining file)
        with open(tmp, "wb") as fh:
            np.save(fh, features, allow_pickle=False)
        os.replace(tmp, path)  # never leave a half-written .npy behind


def extract_to_directory(
    inputs: Iterable[str | os.PathLike],
    config: FeatureConfig | str,
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    overwrite: bool = True,
    progress: bool = True,
    on_error: Callable[[Path, str], None] | None = None,
) -> ExtractionReport:
    """Compute features for every input file (directories are searched recursively) into ``out_dir``.

    One ``.npy`` per input, mirroring its path below the directory given (a file given directly
    lands at the top). Bad files are reported (``on_error`` and the returned report) and skipped;
    the others are still written. ``workers > 1`` processes files in worker processes
    (see :func:`iter_extract`).
    """
    config = _as_config(config)
    items = list(inputs)
    files = find_audio_files(items)
    if not files:
        raise ConfigError(f"no audio files found in {', '.join(map(str, items)) or '(nothing given)'}")
    roots = [Path(i) for i in items if Path(i).is_dir()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outs = _output_paths(files, roots, out_dir)
    report = ExtractionReport()
    jobs: list[tuple[Path, Path]] = []
    for src, dst in zip(files, outs):
        if not overwrite and dst.exists():
            report.skipped.append(dst)
            continue
        jobs.append((src, dst))

    from tqdm import tqdm

    with tqdm(total=len(jobs), unit="file", desc=f"features ({config.name})", disable=not progress) as bar:
        results = iter_extract([src for src, _ in jobs], config, workers=workers)
        for (src, dst), (_, feats, error) in zip(jobs, results):
            if error is None:
                try:
                    _save(dst, feats)
                except OSError as exc:
                    if exc.errno in DISK_FULL_ERRNOS:  # no later file could be written either: stop, keep what is written
                        results.close()
                        raise ConfigError(
                            f"{out_dir}: cannot write the features of {src} ({exc.strerror or exc}: is the disk full?); "
                            f"free space there or choose another --out, then run again with --skip-existing: the "
                            f"{len(report.written)} file(s) written so far are kept") from None
                    error = f"{dst}: cannot write the features ({exc}); check the output directory"
                else:
                    report.written.append(dst)
                    report.shapes[str(dst)] = tuple(feats.shape)
            if error is not None:
                report.failed.append((src, error))
                if on_error is not None:
                    on_error(src, error)
                else:
                    log.warning("skipped %s", error)
            bar.update(1)
    return report


__all__ = ["AUDIO_EXTENSIONS", "ExtractionReport", "extract_file", "extract_to_directory", "find_audio_files", "iter_extract"]

