"""The feature cache that ``musetag prepare`` builds and the datasets read.

Layout of ``CACHE_DIR``::

    cache.json        settings (feature config, dtype, dataset, where the arrays are); a resumed run must match them
    journal.jsonl     one line per finished track (shape and sums for the statistics): the resume log
    failures.csv      tracks that could not be processed (id, path, error)
    index.json        the result: tags, task, feature config with mean/std, and one entry per track
    index.csv         the same entries for people (id, file, split, tags, frames)
    stats.json        mean/std over the training split (global and per mel band)

The arrays live in an array store (:mod:`musetag.data.store`), ``STORE/v<version>-<settings hash>-<dtype>/``,
one ``.npy`` per audio file named by the file's resolved path, size and mtime, float16 or float32, time
on the last axis (mel mono (n_mels, frames), stereo (2, n_mels, frames), waveform (samples,)...). Caches
of other datasets over the same files and settings share them: nothing is decoded twice. The store is
``CACHE/features`` unless the dataset names another (the default caches share ``.musetag-cache/features``).
Caches written before the store (``features/<track id>.npy``, no ``arrays`` in ``cache.json``) are
read and resumed as they are.

Every ``.npy`` is written to a temporary name and renamed into place (``os.replace``), so a killed
run never leaves a half-written file; the next run skips what is done and continues. Official
MTG-Jamendo mel-spectrograms (records with a ``feature_path``) are used in place, without audio.

One file on purpose (about 640 lines): the worker side, the journal, the shared arrays and the index
are one write protocol whose pieces must agree; reading is in :mod:`musetag.data.cache_reader`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from musetag.data.cache_arrays import CACHE_VERSION, _summary, save_array_atomically
from musetag.data.manifest import TrackRecord
from musetag.data.cache_reader import FeatureCache, open_cache  # noqa: F401  (re-exported)
from musetag.data.tags import TagVocab
from musetag.errors import ConfigError, DatasetError
from musetag.outputs import DISK_FULL_ERRNOS, write_text_atomic

log = logging.getLogger(__name__)

DTYPES = ("float16", "float32")


def safe_name(track_id: str) -> str:
    """A file name for ``track_id`` (unsafe characters replaced; a hash keeps names unique)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", track_id).strip(".") or "track"
    if name != track_id:
        name = f"{name[:80]}-{hashlib.sha1(track_id.encode('utf-8')).hexdigest()[:8]}"
    return name


# ------------------------------------------------------------------------------------ worker side
def _init_worker() -> None:
    """A worker's start: it dies with its parent, and computes on one thread (the same arithmetic as
    ``workers=0``; parallelism comes from the tracks)."""
    import sys

    from musetag.workers import die_with_parent

    die_with_parent()
    torch = sys.modules.get("torch")
    if torch is not None:  # inherited from the parent; the numpy front end needs no torch of its own
        torch.set_num_threads(1)


def _process_track(job: dict[str, Any]) -> dict[str, Any]:
    """Compute (or check) one track's features and store them; never raises."""
    track_id = job["id"]
    try:
        from musetag.features import FeatureConfig

        config = FeatureConfig.from_dict(job["features"])
        if job.get("official"):
            source = Path(job["official"])
            if not source.is_file():
                raise DatasetError(f"official feature file {source} not found")
            array = np.load(source, mmap_mode="r")
            if config.kind == "mel" and (array.ndim != 2 or array.shape[0] != config.n_mels):
                raise DatasetError(
                    f"{source}: expected an official mel-spectrogram of shape ({config.n_mels}, frames), "
                    f"found {array.shape}; use the jamendo96 preset with official features"
                )
            if not np.isfinite(np.asarray(array, dtype=np.float32)).all():
                raise DatasetError(f"{source}: contains NaN or infinite values")
            return {"id": track_id, "file": str(source), **_summary(array, config.kind)}
        audio = job["audio"]
        if audio is None:
            raise DatasetError("no audio path (and no precomputed features) for this track")
        if not Path(audio).is_file():
            raise DatasetError(f"audio file {audio} not found")
        from musetag.features import extract_file

        array = extract_file(audio, config)
        if array.shape[-1] == 0:
            raise DatasetError(f"{audio}: too short, no feature frames")
        array = np.ascontiguousarray(array.astype(job["dtype"]))
        if not np.isfinite(array).all():
            raise DatasetError(f"{audio}: features contain NaN or infinite values (float16 overflow?)")
        try:
            save_array_atomically(Path(job["out"]), array)
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise  # this track's own trouble (a name too long...): reported, the others go on
            # the store's disk is full or read-only: no other track could be stored either
            why = exc.strerror or f"{exc}: is the disk full?"
            return {"id": track_id, "error": why, "fatal": str(Path(job["out"]).parent)}
        return {"id": track_id, "file": job["file"], **_summary(array, config.kind)}
    except Exception as exc:  # reported, never fatal: the other tracks continue
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        return {"id": track_id, "error": message}


# ------------------------------------------------------------------------------------ main side
@dataclass
class PrepareResult:
    out_dir: Path
    n_tracks: int
    n_cached: int
    n_computed: int
    n_resumed: int
    failures: list[dict[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def index_path(self) -> Path:
        return self.out_dir / "index.json"

    @property
    def report_path(self) -> Path:
        return self.out_dir / "failures.csv"


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that track is simply redone/re-summarised
            if isinstance(entry, dict) and "id" in entry and "error" not in entry:
                done[entry["id"]] = entry
    return done


def _settings(feature_dict: dict[str, Any], dtype: str, dataset: dict | None, official: bool) -> dict[str, Any]:
    return {"version": CACHE_VERSION, "features": feature_dict, "dtype": dtype, "official_features": official,
            "dataset": dataset}


def _feature_key(config) -> dict[str, Any]:
    d = config.to_dict()
    for k in ("mean", "std", "name", "extra"):
        d.pop(k, None)
    return d


def _use_official(records: Sequence[TrackRecord], features, from_audio: bool, where: str) -> bool:
    """Official MTG-Jamendo mel-spectrograms are used when every record has one and either the
    features asked for are the official ones (jamendo96) or there is no audio to compute others."""
    from musetag.features import get_preset

    if from_audio or not records or any(r.feature_path is None for r in records):
        return False
    matches = _feature_key(features) == _feature_key(get_preset("jamendo96"))
    if matches:
        return True
    if any(r.audio_path is None for r in records):
        raise DatasetError(
            f"{where}: only official MTG-Jamendo mel-spectrograms are available (no audio_root), but the features "
            f"asked for are {features.name!r}; use preset = \"jamendo96\" or set paths.audio_root"
        )
    return False


def prepare(
    config,
    out_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    dtype: str = "float16",
    progress: bool = True,
    from_audio: bool = False,
    overwrite: bool = False,
    records: Sequence[TrackRecord] | None = None,
    feature_config=None,
) -> PrepareResult:
    """Build (or resume) the feature cache of the dataset ``config`` describes.

    ``config``: a :class:`~musetag.data.DatasetConfig` or a path to its TOML file. ``out_dir``
    defaults to the dataset's cache folder (:func:`musetag.data.store.dataset_cache_dir`, the one
    ``musetag train`` uses). ``workers``: processes (default: all cores; 0 = in this
    process). ``dtype``: ``float16`` (half the disk, plenty for log-mel) or ``float32``.
    ``from_audio``: ignore official precomputed features and decode the audio.
    ``records`` / ``feature_config``: use these instead of reading the corpus / the config's preset.
    Failing tracks are written to ``failures.csv`` and left out of the index; the rest continue.
    """
    from musetag.data.config import DatasetConfig, load_dataset_config
    from musetag.data.datasets import dataset_vocab, read_corpus

    from musetag.data.store import dataset_cache_dir, default_store

    if not isinstance(config, DatasetConfig):
        config = load_dataset_config(config)
    feature_config = feature_config or config.feature_config()
    out = Path(out_dir) if out_dir is not None else dataset_cache_dir(config, feature_config)
    if out is None:
        raise DatasetError(f"{config.where}: no output folder; pass --out CACHE_DIR or set cache = \"...\" in the config")
    from musetag.outputs import check_writable

    check_writable(out, folder=True, flag="--out" if out_dir is not None else f"{config.where}: cache")
    records, seeded = (list(records), True) if records is not None else read_corpus(config)
    empty = [split for split in ("validation", "test") if not any(r.split == split for r in records)]
    if empty and records:
        fractions = "/".join(f"{f:g}" for f in config.split_fractions)
        if not seeded:  # the manifest's split column (or the corpus) said so: [split] fractions played no part
            fractions = "from the manifest's split column" if config.reader == "csv" else "from the corpus"
            fix = ("give some tracks that split in the manifest's split column, or leave the column out to let musetag "
                   "split them by [split] fractions" if config.reader == "csv" else "check the corpus' own split")
        elif len(records) < 3:  # no fractions fill three splits: more tracks are the fix
            fix = "every split needs at least one track: add tracks"
        elif list(config.split_fractions) != [0.6, 0.2, 0.2]:
            fix = "with few tracks give them a larger share, e.g. [split] fractions = [0.6, 0.2, 0.2], or a split column"
        else:
            fix = "with few tracks, give a split column naming each track's split"
        log.warning("%s: no %s tracks among %d (split %s); %s", config.where, " or ".join(empty), len(records),
                    fractions, fix)
    return build_cache(
        records, feature_config, out, vocab=dataset_vocab(config, records),
        task=config.task, name=config.name, dataset=config.to_dict(), where=config.where, workers=workers,
        dtype=dtype, progress=progress, from_audio=from_audio, overwrite=overwrite,
        store=default_store(config, out),
    )


def build_cache(
    records: Sequence[TrackRecord],
    features,
    out_dir: str | Path,
    *,
    vocab: TagVocab | None = None,
    task: str = "multilabel",
    name: str | None = None,
    dataset: dict | None = None,
    where: str = "dataset",
    workers: int | None = None,
    dtype: str = "float16",
    progress: bool = True,
    from_audio: bool = False,
    overwrite: bool = False,
    store: str | Path | None = None,
) -> PrepareResult:
    """The work behind :func:`prepare`, for records and a FeatureConfig given directly. ``store``: the
    array store root of a new cache (default ``out_dir/features``); an existing cache keeps its own.

    Steps: check the records, open (or create) the cache's settings and array folder, plan one job per
    track not yet cached and run them (journal lines as they finish), write ``failures.csv``, then the
    statistics and the index."""
    started = time.perf_counter()
    if dtype not in DTYPES:
        raise DatasetError(f"dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    out = Path(out_dir).expanduser().resolve()
    if features.kind == "embedding":
        dtype = "float32"  # the same numbers `musetag embed` gives (musetag.data.embed_features)
    records = list(records)
    if vocab is None and records and not any(r.tags for r in records) and records[0].extra.get("targets"):
        vocab = TagVocab(f"target{i}" for i in range(len(records[0].extra["targets"])))  # index only: no tags needed
    vocab = vocab or TagVocab.from_records(records)
    official = _check_sources(records, features, from_audio, where)
    settings, arrays, by_audio = _open_cache_folder(out, features, dtype, dataset, official, overwrite, store)
    ctx = _BuildContext(out, arrays, by_audio, official, features, dtype, overwrite, where)
    done, failures, n_jobs, resumed = _compute_missing(ctx, records, workers=workers, progress=progress)
    failure_rows = _write_failures(out, records, failures, official)
    cached = [r for r in records if r.id in done and r.id not in failures]
    if not cached:
        raise DatasetError(
            f"{out}: no track could be processed ({len(failure_rows)} failures; first: "
            f"{failure_rows[0]['error'] if failure_rows else 'none'}); see {out / 'failures.csv'}"
        )
    train = [done[r.id] for r in cached if r.split == "train"]
    stats = _combine_stats(train or [done[r.id] for r in cached], split="train" if train else "all")
    feature_dict = features.replace(mean=None, std=None).to_dict()
    _write_index(out, name, task, settings, feature_dict, vocab, cached, done, stats)
    return PrepareResult(out, len(records), len(cached), n_jobs - len(failure_rows), resumed, failure_rows,
                         stats, time.perf_counter() - started)


@dataclass
class _BuildContext:
    """What every step of :func:`build_cache` needs to know about the cache being built."""

    out: Path
    arrays: Path
    by_audio: bool
    official: bool
    features: Any
    dtype: str
    overwrite: bool
    where: str


def _check_sources(records: list[TrackRecord], features, from_audio: bool, where: str) -> bool:
    """Whether the official mel-spectrograms are used; refuses records with nothing to compute from."""
    official = _use_official(records, features, from_audio, where)
    if not official and any(r.audio_path is None for r in records):
        missing = [r.id for r in records if r.audio_path is None]
        raise DatasetError(
            f"{where}: {len(missing)} track(s) have no audio path (e.g. {', '.join(missing[:3])}); "
            "set paths.audio_root (or melspec_root for official features)"
        )
    return official


def _open_cache_folder(out: Path, features, dtype: str, dataset: dict | None, official: bool, overwrite: bool,
                       store: str | Path | None) -> tuple[dict[str, Any], Path, bool]:
    """``(settings, array folder, arrays named by audio file)``: a new cache's ``cache.json`` written, an
    existing one's compared (a different version or settings is refused), ``--overwrite`` applied."""
    # cache.json keeps the settings that decide the arrays (no name, mean/std or extra): a resumed run
    # and training (musetag.training.data) compare against them
    settings = json.loads(json.dumps(_settings(_feature_key(features), "float32" if official else dtype, dataset,
                                               official), default=str))
    settings_path = out / "cache.json"
    if overwrite and out.exists():
        if not (settings_path.exists() or (out / "index.json").exists()) and any(out.iterdir()):
            raise DatasetError(
                f"--overwrite {out}: this folder holds files but no cache.json or index.json, so it is not a feature "
                "cache, and --overwrite would delete files of that name in it (index.json, stats.json, features/*.npy, "
                "...); give --out a new or empty folder, or the folder of the cache to rebuild")
        for fname in ("journal.jsonl", "index.json", "index.csv", "stats.json", "failures.csv", "cache.json"):
            (out / fname).unlink(missing_ok=True)
        if (out / "features").is_dir():
            for f in (out / "features").glob("*.npy"):
                f.unlink()  # arrays of the layout before the store; the store's own are recomputed below
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.exists() else None
    if previous is not None and "arrays" not in previous:  # made before the store: features/<track id>.npy
        arrays, by_audio = out / "features", False
    else:
        from musetag.data.store import arrays_dir

        arrays = (out / previous["arrays"] if previous is not None else
                  arrays_dir(Path(store) if store is not None else out / "features", settings["features"], settings["dtype"],
                             CACHE_VERSION))
        by_audio = True
        settings["arrays"] = os.path.relpath(arrays, out)
    if previous is not None:
        _check_same_settings(out, previous, settings)
    else:
        write_text_atomic(settings_path, json.dumps({**settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                                     indent=1))
    if not official:
        arrays.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(arrays)
    return settings, arrays, by_audio


def _check_same_settings(out: Path, previous: dict[str, Any], settings: dict[str, Any]) -> None:
    comparable = ("version", "features", "dtype", "official_features")
    diff = [k for k in comparable if previous.get(k) != settings.get(k)]
    if "version" in diff:
        raise DatasetError(
            f"{out}: this cache was made by an older musetag (cache format {previous.get('version')}, now "
            f"{CACHE_VERSION}) whose features differ from today's; rebuild it with --overwrite (or use another --out)"
        )
    if diff:
        raise DatasetError(
            f"{out}: this cache was prepared with different settings ({', '.join(diff)} differ); "
            "use another --out folder, or --overwrite to rebuild it"
        )


def _compute_missing(ctx: _BuildContext, records: list[TrackRecord], *, workers: int | None,
                     progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str], int, int]:
    """Every track not in the journal computed (or summarised, when its array already exists):
    ``(journal entries by id, errors by id, jobs run, tracks resumed)``."""
    names = {r.id: safe_name(r.id) for r in records}
    if not ctx.by_audio and len(set(names.values())) != len(names):
        raise DatasetError(f"{ctx.where}: two track ids map to the same cache file name; make the ids unique")
    journal_path = ctx.out / "journal.jsonl"
    done = _read_journal(journal_path)
    failures: dict[str, str] = {}
    journal = open(journal_path, "a", encoding="utf-8")
    try:
        jobs, followers, resumed = _plan_jobs(ctx, records, names, done, journal)
        if resumed:
            log.info("%s: %d of %d tracks already cached (by an earlier run, or by another dataset over the same "
                     "audio); %d to compute", ctx.out, resumed, len(records), len(jobs))

        def handle(result: dict[str, Any]) -> None:
            if result.get("fatal"):
                raise DatasetError(
                    f"{result['fatal']}: cannot write the features of track {result['id']!r} ({result['error']}); "
                    f"free space there (or choose another --out, or store = \"...\" in the dataset TOML) and run "
                    f"prepare again: the {len(done)} track(s) cached so far are kept and it resumes")
            if "error" in result:
                failures[result["id"]] = result["error"]
                return
            journal.write(json.dumps(result) + "\n")
            journal.flush()
            done[result["id"]] = result

        if ctx.features.kind == "embedding":
            from musetag.data.embed_features import run_embed_jobs

            try:
                run_embed_jobs(jobs, handle, progress=progress)
            except ConfigError as exc:
                raise ConfigError(f"{ctx.where}: {exc}; fix the preset and run the command again") from exc
        else:
            _run_jobs(jobs, handle, workers=workers, progress=progress)
        for track, leader in followers.items():
            if leader in failures:
                failures[track] = failures[leader]
            elif leader in done:
                handle({**done[leader], "id": track})
    finally:
        journal.close()
    return done, failures, len(jobs), resumed


def _plan_jobs(ctx: _BuildContext, records: list[TrackRecord], names: dict[str, str],
               done: dict[str, dict[str, Any]], journal) -> tuple[list[dict[str, Any]], dict[str, str], int]:
    """``(jobs, followers, resumed)``: one job per track still to compute; a track whose audio another
    track computes follows it; an array already in place is summarised into the journal (no decoding)."""
    feature_dict = ctx.features.replace(mean=None, std=None).to_dict()
    jobs, resumed = [], 0
    queued: dict[Path, str] = {}  # array -> the track computing it
    followers: dict[str, str] = {}  # track -> the track computing its array (the same audio file twice)
    for r in records:
        final = _array_path(ctx.arrays, r, names[r.id], ctx.by_audio) if not ctx.official else None
        rel = os.path.relpath(final, ctx.out) if final is not None else None
        entry = done.get(r.id)
        if ctx.official:
            if entry is not None and entry.get("file") == str(r.feature_path):
                resumed += 1
                continue
        elif final is not None and final in queued:
            followers[r.id] = queued[final]
            continue
        elif final is not None and final.exists() and not ctx.overwrite:
            if entry is None or entry.get("file") != rel:
                # Another dataset's array of the same audio, or renamed into place but killed before the
                # journal line: summarise the file (no decoding).
                array = np.load(final, mmap_mode="r")
                entry = {"id": r.id, "file": rel, **_summary(array, ctx.features.kind)}
                journal.write(json.dumps(entry) + "\n")
                done[r.id] = entry
            resumed += 1
            continue
        if final is not None:
            queued[final] = r.id
        jobs.append({"id": r.id, "audio": str(r.audio_path) if r.audio_path else None,
                     "official": str(r.feature_path) if ctx.official else None,
                     "features": feature_dict, "dtype": ctx.dtype,
                     "out": str(final or ctx.arrays / f"{names[r.id]}.npy"), "file": rel,
                     # embeddings: each backbone's per-file arrays sit beside the cache's own in the store
                     "store": str(ctx.arrays.parent) if ctx.by_audio and ctx.features.kind == "embedding" else None})
    journal.flush()
    return jobs, followers, resumed


def _write_failures(out: Path, records: list[TrackRecord], failures: dict[str, str],
                    official: bool) -> list[dict[str, str]]:
    """``failures.csv`` (atomically; header only when nothing failed); its rows."""
    failure_rows = [{"id": r.id, "path": str(r.feature_path if official else r.audio_path), "error": failures[r.id]}
                    for r in records if r.id in failures]
    with open(out / ".failures.csv.tmp", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "error"])
        writer.writeheader()
        writer.writerows(failure_rows)
    os.replace(out / ".failures.csv.tmp", out / "failures.csv")
    if failure_rows:
        log.warning("%d track(s) failed; see %s", len(failure_rows), out / "failures.csv")
    return failure_rows


def training_cache(records: Sequence[TrackRecord], feature_config, cache_dir: str | Path, *, progress: bool = True,
                   workers: int | None = None, dtype: str | None = None,
                   store: str | Path | None = None) -> dict[str, Path]:
    """Features for ``records`` under ``feature_config`` in ``cache_dir`` (built or resumed):
    ``{track id: .npy path}``. Used by training; raises after processing everything else when a
    track fails (its error is in ``failures.csv``). ``dtype`` None: the existing cache's, else float32."""
    cache_dir = Path(cache_dir)
    if dtype is None:
        dtype = "float32"
        settings = cache_dir / "cache.json"
        if settings.exists():
            dtype = json.loads(settings.read_text(encoding="utf-8")).get("dtype", "float32")
    result = build_cache(records, feature_config, cache_dir, where=str(cache_dir), workers=workers,
                         dtype=dtype, progress=progress, store=store)
    if result.failures:
        first = result.failures[0]
        raise DatasetError(
            f"{len(result.failures)} track(s) could not be processed (first: {first['id']}: {first['error']}); "
            f"see {result.report_path}; fix or remove them from the dataset"
        )
    cache = FeatureCache(cache_dir)
    return {t["id"]: cache.file(i) for i, t in enumerate(cache.tracks)}


def _array_path(arrays: Path, record: TrackRecord, name: str, by_audio: bool) -> Path | None:
    """Where ``record``'s array goes: named by its audio file (store) or by its id (older caches);
    None when the audio file cannot be read (the track's job then reports why)."""
    if not by_audio:
        return arrays / f"{name}.npy"
    from musetag.data.store import audio_key

    try:
        return arrays / audio_key(record.audio_path)
    except (OSError, TypeError):
        return None


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary arrays left by killed runs (never renamed, so never trusted); a live process's are kept,
    since a store can be shared by two ``prepare`` runs at once."""
    for stale in folder.glob("*.tmp-*.npy"):
        try:
            pid = int(stale.name.rsplit(".tmp-", 1)[1].split(".", 1)[0])
        except ValueError:
            pid = None
        if pid is not None and pid != os.getpid() and _process_alive(pid):
            continue
        stale.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process. A killed worker is a zombie until someone reaps it (an
    orphan may never be reaped in a container whose first process does not): that counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust the signal check
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _run_jobs(jobs, handle, *, workers: int | None, progress: bool) -> None:
    from tqdm import tqdm

    if workers is not None and workers < 0:
        raise DatasetError(f"--workers {workers}: give a number of worker processes >= 1, or 0 to compute in this "
                           "process")
    bar = tqdm(total=len(jobs), desc="prepare", unit="track", disable=not progress or not jobs, dynamic_ncols=True)
    try:
        if workers is None and len(jobs) < 16:
            workers = 0  # starting processes costs more than a few tracks
        if workers == 0 or len(jobs) <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # same arithmetic as a worker process: results never depend on it
            try:
                for job in jobs:
                    handle(_process_track(job))
                    bar.update(1)
            finally:
                torch.set_num_threads(threads)
            return
        from musetag.workers import CRASHED, ordered_map

        n_workers = min(workers or os.cpu_count() or 1, len(jobs))
        # musetag.workers: Ctrl-C (or a kill of this process alone) stops the workers at once instead of
        # waiting on them, and a track whose worker dies (a decoder crashing on a damaged file, the
        # out-of-memory killer) is retried alone and reported, while the other tracks go on
        outcomes = ordered_map(_process_track, jobs, workers=n_workers, initializer=_init_worker, ordered=False)
        try:
            for job, outcome, _ in outcomes:
                if outcome is CRASHED:
                    outcome = {"id": job["id"], "error": "the worker process died while computing this track (a "
                               "decoder crash on a damaged file, or the system ran out of memory); check or "
                               "re-encode the file"}
                elif isinstance(outcome, BaseException):
                    outcome = {"id": job["id"], "error": f"{type(outcome).__name__}: {outcome}".replace("\n", " ")}
                handle(outcome)
                bar.update(1)
        finally:
            outcomes.close()  # a fatal error or Ctrl-C here: the workers are stopped, not waited for
    finally:
        bar.close()


def _combine_stats(entries: list[dict[str, Any]], *, split: str) -> dict[str, Any]:
    count = sum(e["count"] for e in entries)
    total = math.fsum(e["sum"] for e in entries)
    total_sq = math.fsum(e["sumsq"] for e in entries)
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 1e-12))
    stats: dict[str, Any] = {"split": split, "tracks": len(entries), "values": count, "mean": mean, "std": std}
    if entries and entries[0].get("band_sum") is not None:
        band = np.array([e["band_sum"] for e in entries], dtype=np.float64)
        band_sq = np.array([e["band_sumsq"] for e in entries], dtype=np.float64)
        per_band = count / band.shape[1]
        band_mean = band.sum(axis=0) / per_band
        band_std = np.sqrt(np.maximum(band_sq.sum(axis=0) / per_band - band_mean ** 2, 1e-12))
        stats["band_mean"] = band_mean.tolist()
        stats["band_std"] = band_std.tolist()
    return stats


def _write_index(out: Path, name, task, settings, feature_dict, vocab: TagVocab, records, done, stats) -> None:
    entries = []
    for r in records:
        e = done[r.id]
        entries.append({"id": r.id, "file": e["file"], "shape": e["shape"], "split": r.split, "tags": list(r.tags),
                        "group": r.group, "duration": r.duration,
                        "audio_path": str(r.audio_path) if r.audio_path else None,
                        **({"targets": list(r.extra["targets"])} if r.extra.get("targets") else {})})
    features = json.loads(json.dumps(dict(feature_dict, mean=stats["mean"], std=stats["std"]), default=str))
    index = {"version": CACHE_VERSION, "name": name, "task": task, "tags": vocab.to_list(),
             "dtype": settings["dtype"], "official_features": settings["official_features"],
             "features": features, "stats": stats, "dataset": settings["dataset"], "tracks": entries}
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=1))
    tmp = out / ".index.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "split", "tags", "frames"])
        for e in entries:
            writer.writerow([e["id"], e["file"], e["split"] or "", ";".join(e["tags"]), e["shape"][-1]])
    os.replace(tmp, out / "index.csv")
    write_text_atomic(out / "index.json", json.dumps(index, indent=1))
