"""Files -> features: one file (:func:`extract_file`) or many, in parallel, to ``.npy`` files
(:func:`extract_to_directory`, what ``musetag features`` runs)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musetag.audio.io import AudioSource, load_audio
from musetag.errors import ConfigError, MusetagError
from musetag.features.frontend import compute_features
from musetag.features.presets import FeatureConfig, get_preset

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
    )
    return compute_features(audio, sr, config)


def find_audio_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus audio files (by extension) found recursively in given directories.

    Missing paths are kept, so that they are reported as errors rather than silently dropped.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
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
    # two inputs with the same name from different places must not overwrite each other
    seen: dict[Path, int] = {}
    unique = []
    for out in outs:
        n = seen.get(out, 0)
        seen[out] = n + 1
        unique.append(out if n == 0 else out.with_name(f"{out.stem}-{n}{out.suffix}"))
    return unique


def _work(args: tuple[str, str, dict]) -> tuple[str, str | None, tuple[int, ...] | None]:
    src, dst, cfg = args
    try:
        feats = extract_file(src, FeatureConfig.from_dict(cfg))
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(dst).with_name(Path(dst).name + ".part")
        with open(tmp, "wb") as fh:
            np.save(fh, feats, allow_pickle=False)
        os.replace(tmp, dst)
        return src, None, tuple(feats.shape)
    except MusetagError as exc:
        return src, str(exc), None
    except Exception as exc:  # a decoder crash on one file must not stop the batch
        return src, f"{src}: unexpected {type(exc).__name__}: {exc}", None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


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
    the others are still written. ``workers > 1`` processes files in parallel processes.
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
    jobs = []
    for src, dst in zip(files, outs):
        if not overwrite and dst.exists():
            report.skipped.append(dst)
            continue
        jobs.append((str(src), str(dst), config.to_dict()))
    dst_of = {j[0]: Path(j[1]) for j in jobs}

    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="file", desc=f"features ({config.name})", disable=not progress)

    def handle(result):
        src, error, shape = result
        if error is None:
            report.written.append(dst_of[src])
            report.shapes[str(dst_of[src])] = shape
        else:
            report.failed.append((Path(src), error))
            if on_error is not None:
                on_error(Path(src), error)
            else:
                log.warning("skipped %s", error)
        bar.update(1)

    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                handle(_work(job))
        else:
            import multiprocessing as mp

            # spawn, not fork: forking after torch/OpenMP started threads can deadlock the children
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker) as pool:
                for result in pool.map(_work, jobs, chunksize=1):
                    handle(result)
    finally:
        bar.close()
    return report


__all__ = ["AUDIO_EXTENSIONS", "ExtractionReport", "extract_file", "extract_to_directory", "find_audio_files"]

