"""A labelling project folder (``musetag label FOLDER --tags ... --out PROJECT_DIR``).

``PROJECT_DIR`` holds ``project.json`` (the audio folder, tags, task, backbone, whether subfolders
count, the embedding store), ``labels.csv`` (:mod:`musetag.tag.label_store`) and ``failures.csv``
(files that could not be embedded). Running ``musetag label PROJECT_DIR`` again reopens it and
picks up files added to the folder since.

Embeddings go to the same array store layout as ``musetag prepare``'s ``embed:`` caches
(:func:`musetag.data.store.arrays_dir` of the backbone's feature settings, one ``.npy`` per audio
file named by :func:`musetag.data.store.audio_key`: resolved path, size and mtime), by default
under ``$MUSETAG_HOME/features`` (``--store`` to choose): a second project over the same files, with
the same backbone, embeds nothing. :class:`EmbeddingJob` embeds the missing files in a background
thread and reports progress and throughput while the page is in use.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from musetag.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
DTYPE = "float32"  # embeddings are stored as computed (a prepare with --dtype float32 shares the folder)
FORBIDDEN = (",", ";", "=", "\n", "\r", '"')
GROUP_BY = ("folder", "artist", "file")  # what keeps tracks together in an export's splits (label_export.track_groups)


def parse_tags(text: str | list[str], where: str = "--tags") -> list[str]:
    """The tag names of ``--tags "a,b,c"`` (or a list): stripped; empty names, names with a comma,
    semicolon, quote or line break, and duplicates (case-insensitive) are refused."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if not name:
            raise ConfigError(f"{where}: an empty tag name in {text!r}; write the names separated by single "
                              "commas, e.g. --tags \"focus,workout,late night\"")
        bad = [c for c in FORBIDDEN if c in name]
        if bad:
            raise ConfigError(f"{where}: the tag name {name!r} contains {bad[0]!r}; tag names cannot hold commas, "
                              "semicolons, '=', quotes or line breaks (they separate tags and values in the labels "
                              "file); rename it")
        if name.lower() in (o.lower() for o in out):
            raise ConfigError(f"{where}: the tag {name!r} is given twice in {text!r}; give each tag once")
        out.append(name)
    if not out:
        raise ConfigError(f"{where}: no tags; give at least one, e.g. --tags \"focus,workout\"")
    if len(out) > 99:
        raise ConfigError(f"{where}: {len(out)} tags; at most 99 can be labelled on one page")
    return out


@dataclass
class Project:
    dir: Path
    folder: Path
    tags: list[str]
    task: str = "multilabel"
    backbone: str = ""  # a pretrained name or a package path (`musetag label --backbone`, whose default is measured)
    recursive: bool = False
    store: Path | None = None
    group_by: str = "folder"

    @property
    def labels_path(self) -> Path:
        return self.dir / "labels.csv"

    def embed_spec(self) -> str:
        """The backbone as ``prepare``'s ``embed:`` preset records it (``NAME@windows=fit``): what the page
        embeds with, what the arrays folder is named after, and what an exported package tags with."""
        from musetag.data.embed_features import embedding_feature_config

        return embedding_feature_config(self.backbone, "--backbone").embed

    def arrays_dir(self) -> Path:
        """The store folder of this backbone's embeddings (the layout of ``musetag prepare``)."""
        from musetag.data.cache_arrays import CACHE_VERSION
        from musetag.data.embed_features import embedding_feature_config
        from musetag.data.store import arrays_dir, settings_key

        config = embedding_feature_config(self.backbone, "--backbone")
        return arrays_dir(self.store_root(), settings_key(config), DTYPE, CACHE_VERSION)

    def store_root(self) -> Path:
        if self.store is not None:
            return Path(self.store)
        from musetag.inference.hub import home

        return home() / "features"

    def save(self) -> None:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "dir"}
        tmp = self.dir / f".{PROJECT_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(d, indent=1), encoding="utf-8")
        os.replace(tmp, self.dir / PROJECT_FILE)


def is_project(path: str | os.PathLike) -> bool:
    return (Path(path) / PROJECT_FILE).is_file()


def open_project(project_dir: str | os.PathLike) -> Project:
    path = Path(project_dir) / PROJECT_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return Project(dir=Path(project_dir), folder=Path(d["folder"]), tags=parse_tags(d["tags"], str(path)),
                       task=d["task"], backbone=d["backbone"], recursive=bool(d["recursive"]),
                       store=Path(d["store"]) if d.get("store") else None, group_by=d.get("group_by", "folder"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable labelling project ({exc}); start a new one with "
                           "musetag label FOLDER --tags ... --out NEW_DIR") from exc


def create_project(folder, out, tags, *, backbone: str, task: str = "multilabel",
                   recursive: bool = False, store=None, group_by: str = "folder") -> Project:
    """Check everything (tags, task, backbone, folder), then create ``out`` or reopen it (the same tags
    and backbone; a different setting is refused rather than mixed into the labels). A regression
    project's ``tags`` are its targets (``--targets valence,arousal``)."""
    from musetag.data.embed_features import embedding_feature_config
    from musetag.training.active import TASKS

    tags = parse_tags(tags)
    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: use one of {', '.join(TASKS)}")
    if group_by not in GROUP_BY:
        raise ConfigError(f"--group-by {group_by!r}: use one of {', '.join(GROUP_BY)}")
    embedding_feature_config(backbone, "--backbone")  # an unknown backbone fails before any work
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; give the folder of audio files to label")
    project = Project(Path(out), folder, tags, task, backbone, recursive, Path(store).resolve() if store else None,
                      group_by)
    if is_project(out):
        old = open_project(out)
        for name in ("folder", "tags", "task", "backbone"):
            if getattr(old, name) != getattr(project, name):
                raise ConfigError(f"{out} is a labelling project with {name} = {getattr(old, name)!r}, not "
                                  f"{getattr(project, name)!r}; run `musetag label {out}` to resume it, or give "
                                  "another --out")
        return old
    scan(project)  # a folder without audio fails before the project folder is made
    if Path(out).exists() and any(Path(out).iterdir()):
        raise ConfigError(f"{out}: exists and is not a labelling project; give a new or empty --out folder")
    Path(out).mkdir(parents=True, exist_ok=True)
    project.save()
    return project


def scan(project: Project) -> list[str]:
    """The project's audio files, relative to its folder, sorted; a folder without audio is an error."""
    from musetag.tag.files import AUDIO_EXTENSIONS, collect_audio_files

    files = collect_audio_files([project.folder], recursive=project.recursive)
    if not files:
        exts = " ".join(sorted(AUDIO_EXTENSIONS))
        raise DatasetError(f"{project.folder}: no audio files ({exts})"
                           + ("" if project.recursive else "; pass --recursive to look in subfolders"))
    return [os.path.relpath(f, project.folder) for f in files]


@dataclass
class EmbeddingJob:
    """The project's embeddings: those already in the store at once, the rest computed in a thread.

    ``vectors`` (path -> float32 vector) grows as files are embedded; ``failures`` (path -> reason)
    lists the files that could not be read; :meth:`progress` reports counts and throughput."""

    project: Project
    paths: list[str]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    computed: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.arrays = self.project.arrays_dir()
        self.todo: list[str] = []
        for p in self.paths:
            array = self._cached(p)
            if array is not None:
                self.vectors[p] = array
            elif p not in self.failures:
                self.todo.append(p)

    def _cached(self, rel: str) -> np.ndarray | None:
        from musetag.data.store import audio_key

        try:
            final = self.arrays / audio_key(self.project.folder / rel)
        except OSError as exc:
            self.failures[rel] = f"cannot read the file: {exc}"
            return None
        if not final.is_file():
            return None
        try:
            return np.load(final).astype(np.float32).reshape(-1)
        except (OSError, ValueError):
            return None  # a damaged array is recomputed

    def run(self) -> None:
        """Embed every missing file (a failing file is recorded and skipped)."""
        from musetag.data.cache_arrays import save_array_atomically
        from musetag.data.embed_features import embed_track, load_backbones
        from musetag.data.store import audio_key

        self.started = time.monotonic()
        if self.todo:
            self.arrays.mkdir(parents=True, exist_ok=True)
            embedders = load_backbones(self.project.embed_spec())  # the windows prepare's arrays were cut with
        for rel in self.todo:
            path = self.project.folder / rel
            try:
                array = embed_track(embedders, path)
                if not np.isfinite(array).all():
                    raise ValueError("the embedding has NaN or infinite values")
                save_array_atomically(self.arrays / audio_key(path), array)
                with self.lock:
                    self.vectors[rel] = array.reshape(-1)
                    self.computed += 1
            except Exception as exc:  # noqa: BLE001 - listed on the page; the other files continue
                with self.lock:
                    self.failures[rel] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                log.warning("%s: skipped (%s)", path, self.failures[rel])
        self.finished = time.monotonic()
        self.write_failures()
        if self.todo:
            p = self.progress()
            if p["computed"]:
                log.info("embedded %d track(s) in %.1f s (%s tracks/s, %s), %d unreadable", p["computed"],
                         self.finished - self.started, p["tracks_per_s"], self.project.backbone, p["failed"])
            else:  # every file left to embed was unreadable: no rate to give
                log.info("embedded no track in %.1f s (%s): the %d file(s) left to embed are unreadable",
                         self.finished - self.started, self.project.backbone, len(self.todo))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="musetag-label-embed", daemon=True)
        thread.start()
        return thread

    def write_failures(self) -> None:
        with open(self.project.dir / "failures.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "error"])
            writer.writerows(sorted(self.failures.items()))

    def progress(self) -> dict:
        with self.lock:
            done, failed, computed = len(self.vectors), len(self.failures), self.computed
        elapsed = (self.finished or time.monotonic()) - self.started
        return {"total": len(self.paths), "embedded": done, "failed": failed, "computed": computed,
                "from_cache": done - computed, "running": self.finished is None and bool(self.todo),
                "tracks_per_s": round(computed / elapsed, 3) if computed and elapsed > 0 else None}
