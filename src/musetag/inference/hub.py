"""Pretrained models trained on real music: the catalogue, the download, the cache (the whisper/timm way).

``musetag pull NAME`` (and every command that takes a MODEL, given a catalogue name instead of a
path) fetches the upstream file once, checks its size and SHA-256, reads it with
``torch.load(weights_only=True)`` only, converts it into an ordinary musetag model package
(``model.safetensors`` + ``musetag.json`` with the exact front end, segment rule, tag names, licence,
citation and source) and keeps both in the cache:

``$MUSETAG_HOME`` (default ``$XDG_CACHE_HOME/musetag``, i.e. ``~/.cache/musetag``)
    ``downloads/<name>-<sha256[:12]>.pth``  the upstream file, byte for byte
    ``downloads/<name>-thresholds-<sha256[:12]>.txt``  the published per-tag thresholds, when there are any
    ``models/<name>/``                        the converted package (what tagging reads)

An entry whose authors published per-tag decision thresholds (the MTG-Jamendo baseline:
:attr:`Pretrained.thresholds`) has them fetched the same way (pinned URL, size, SHA-256, mirror path),
read strictly (:mod:`musetag.inference.published_thresholds`) and written into the package, so
``--threshold tuned`` (and the default) decides as upstream did: ``score > threshold``.

A cached package is used only when it is current: written by this converter
(:data:`CONVERTER_VERSION`) from the pinned files, and its weights still match their SHA-256. A
damaged package is re-converted from the verified download (with a warning); a package of an older
converter is refreshed, and kept as it is (with a warning saying how to refresh it) when the files it
needs cannot be fetched.

Where the file comes from, in order: the cache; ``$MUSETAG_MODEL_MIRROR`` (a folder laid out like
the upstream repositories, see :attr:`Pretrained.mirror_path`: tests and CI point it at
``../shared/models``); the pinned upstream URL. A file whose size or checksum differs, or that is not a
weights-only state dict, is refused and removed from the cache (a mirror is never modified). Without
network or mirror the error names the URL, the file to place and where.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from musetag.errors import ModelError
from musetag.inference.catalogue import PinnedFile, Pretrained, catalogue, get_entry, is_pretrained_name

log = logging.getLogger(__name__)

#: the model ``musetag tag`` / ``musetag serve`` use when none is given
DEFAULT_MODEL = "mtg-jamendo-baseline"
#: bump when the conversion changes: cached packages written by an older converter are rebuilt
#: (2: the published per-tag thresholds are part of the package)
CONVERTER_VERSION = 2
MIRROR_ENV = "MUSETAG_MODEL_MIRROR"
HOME_ENV = "MUSETAG_HOME"

# -- cache ------------------------------------------------------------------------------------------------


def home() -> Path:
    """The cache folder: ``$MUSETAG_HOME``, else ``$XDG_CACHE_HOME/musetag``, else ``~/.cache/musetag``."""
    if os.environ.get(HOME_ENV):  # made absolute: messages, and packages' recorded paths, stay valid elsewhere
        return Path(os.environ[HOME_ENV]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "musetag"


def download_path(entry: Pretrained | PinnedFile) -> Path:
    suffix = Path(entry.mirror_path).suffix or ".pth"
    return home() / "downloads" / f"{entry.name}-{entry.sha256[:12]}{suffix}"


def package_dir(name: str) -> Path:
    return home() / "models" / name


def _package_state(folder: Path, entry: Pretrained) -> str:
    """``"current"``, ``"missing"``, ``"stale"`` (another converter or pinned file) or ``"damaged"`` (its weights
    no longer match the SHA-256 its description records, or its tags differ from the catalogue's: a tampered or
    half-written cache)."""
    try:
        desc = json.loads((folder / "musetag.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "damaged"
    if not isinstance(desc, dict):
        return "damaged"
    source = desc.get("source") if isinstance(desc.get("source"), dict) else {}
    pretrained = source.get("pretrained") if isinstance(source.get("pretrained"), dict) else {}
    expected = (desc.get("weights") or {}).get("sha256") if isinstance(desc.get("weights"), dict) else None
    weights = folder / "model.safetensors"
    if not expected or not weights.is_file() or _sha256(weights) != expected:
        return "damaged"
    thresholds = None if entry.thresholds is None else entry.thresholds.sha256
    if (pretrained.get("sha256") != entry.sha256 or pretrained.get("converter") != CONVERTER_VERSION
            or pretrained.get("thresholds_sha256") != thresholds):
        return "stale"
    if desc.get("tags") != entry.tags or desc.get("task", entry.task) != entry.task:
        return "damaged"  # edited tag names or order: every score would carry another tag's name
    return "current"


def _package_is_current(folder: Path, entry: Pretrained) -> bool:
    return _package_state(folder, entry) == "current"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path, entry: Pretrained | PinnedFile, origin: str) -> None:
    size = path.stat().st_size
    if size != entry.size:
        raise ModelError(f"{origin}: {size:,} bytes where {entry.name} has {entry.size:,} (a truncated or "
                         "different file)")
    digest = _sha256(path)
    if digest != entry.sha256:
        raise ModelError(f"{origin}: sha256 {digest[:16]}... differs from {entry.name}'s {entry.sha256[:16]}... "
                         "(a damaged or tampered file)")


def _progress_enabled(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _download(entry: Pretrained | PinnedFile, dest: Path, progress: bool | None) -> None:
    """Stream the upstream URL into ``dest`` (atomically), with a progress bar."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(entry.url, headers={"User-Agent": "musetag"})
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - pinned https URL
                total = int(response.headers.get("Content-Length") or entry.size)
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"pull {entry.name}",
                          disable=not _progress_enabled(progress)) as bar:
                    while block := response.read(1 << 16):
                        out.write(block)
                        bar.update(len(block))
                        if out.tell() > entry.size:
                            break  # more than the pinned size: refused by the check below
        _check_file(Path(tmp), entry, f"download of {entry.url}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(
            f"cannot download {entry.name} from {entry.url} ({getattr(exc, 'reason', exc)}). Without network, "
            f"place that file (sha256 {entry.sha256}) at {dest}, or set {MIRROR_ENV} to a folder holding it as "
            f"{entry.mirror_path}"
        ) from None
    except ModelError as exc:
        Path(tmp).unlink(missing_ok=True)
        again = getattr(entry, "model", "") or entry.name
        raise ModelError(f"{exc}; the download was removed, try again (`musetag pull {again} --force`)") from None


def fetch(entry: Pretrained | PinnedFile, *, progress: bool | None = None) -> Path:
    """The verified upstream file in the cache: from the cache, the mirror, or the URL."""
    dest = download_path(entry)
    if dest.is_file():
        try:
            _check_file(dest, entry, str(dest))
            return dest
        except ModelError as exc:
            log.warning("%s; removing it and fetching again", exc)
            dest.unlink(missing_ok=True)
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        source = Path(mirror).expanduser() / entry.mirror_path
        if source.is_file():
            _check_file(source, entry, f"mirror file {source}")  # never modify a mirror: just refuse
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
            return dest
        log.warning("%s is set but %s is missing; trying %s", MIRROR_ENV, source, entry.url)
    _download(entry, dest, progress)
    return dest


def _read_upstream(path: Path, entry: Pretrained) -> dict:
    import torch

    from musetag.models.safe_load import load_torch_file

    try:
        state = load_torch_file(path, what=f"{entry.name} weights")
    except ModelError:
        path.unlink(missing_ok=True)
        raise
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        path.unlink(missing_ok=True)
        raise ModelError(f"{path}: not a state dict of tensors, so not {entry.name}'s weights; removed it")
    return state


def _read_thresholds(entry: Pretrained, progress: bool | None) -> list[float] | None:
    """The published per-tag thresholds (verified download, strictly parsed), or None when there are none."""
    if entry.thresholds is None:
        return None
    from musetag.inference.published_thresholds import read_published_thresholds

    path = fetch(entry.thresholds, progress=progress)
    try:
        return read_published_thresholds(path, entry.upstream_tags,
                                         fix=f"run `musetag pull {entry.name} --force` to fetch it again")
    except ModelError:
        path.unlink(missing_ok=True)
        raise


def pull(name: str, *, force: bool = False, progress: bool | None = None) -> Path:
    """The package folder of pretrained model ``name``: fetched and converted on first use, re-converted
    when the cached package is damaged or was written by an older converter (see the module docstring)."""
    entry = get_entry(name)
    folder = package_dir(name)
    state = "forced" if force else _package_state(folder, entry)
    if state == "current":
        return folder
    if state == "damaged" and folder.exists():
        log.warning("the cached package %s is damaged (its weights differ from the SHA-256 it records, or its "
                    "musetag.json from the catalogue's tags); converting it again from the verified upstream file",
                    folder)
    try:
        return _pull_and_convert(entry, folder, force=force, progress=progress)
    except ModelError as exc:
        if state != "stale":
            raise
        log.warning("%s: cannot refresh the cached package %s, written by an older musetag (%s); using it as "
                    "it is. Run `musetag pull %s` when the files can be fetched", name, folder, exc, name)
        return folder


def _pull_and_convert(entry: Pretrained, folder: Path, *, force: bool, progress: bool | None) -> Path:
    name = entry.name
    if force:
        download_path(entry).unlink(missing_ok=True)
        if entry.thresholds is not None:
            download_path(entry.thresholds).unlink(missing_ok=True)
    raw = fetch(entry, progress=progress)
    state = _read_upstream(raw, entry)
    thresholds = _read_thresholds(entry, progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}."))
    try:
        _convert(entry, state, staging / "pkg", thresholds)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging / "pkg", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled %s into %s", name, folder)
    return folder


def _convert(entry: Pretrained, state: dict, out: Path, thresholds: list[float] | None = None) -> None:
    from musetag.inference.upstream import build_package_from_upstream

    published = entry.thresholds
    source = {"pretrained": {"name": entry.name, "url": entry.url, "sha256": entry.sha256,
                             "upstream": entry.upstream, "converter": CONVERTER_VERSION,
                             "thresholds_url": None if published is None else published.url,
                             "thresholds_sha256": None if published is None else published.sha256,
                             **({"no_thresholds": entry.no_thresholds} if entry.no_thresholds else {})},
              "licence": entry.licence, "citation": entry.citation, "figures": entry.figures}
    from musetag.inference import upstream

    segment = upstream.BASELINE_WHOLE_SONG_SEGMENT if entry.extra.get("segment") == "whole_song" else None
    build_package_from_upstream(entry.extra.get("upstream", entry.name), state, entry.tags, out, source=source,
                                licence=entry.licence, citation=entry.citation, segment=segment,
                                thresholds=thresholds)


def resolve(model: str | os.PathLike, *, progress: bool | None = None) -> Path:
    """A model argument as a path: an existing file or folder as given, a catalogue name pulled (once)."""
    text = os.fspath(model)
    if os.path.exists(text) or not is_pretrained_name(text):
        return Path(text)
    return pull(text, progress=progress)


def format_catalogue() -> str:
    """The table ``musetag models --pretrained`` prints."""
    rows = []
    for entry in catalogue().values():
        cached = "yes" if _package_is_current(package_dir(entry.name), entry) else "no"
        rows.append((entry.name, f"{len(entry.tags)} {entry.task}", f"{entry.size / 1e6:.1f} MB", cached,
                     entry.licence.split(" (")[0].split(";")[0]))
    head = ("name", "tags", "size", "cached", "licence")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines.append("")
    for entry in catalogue().values():
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        lines.append(f"{entry.name}{default}: {entry.description}")
        lines.append(f"    tags: {', '.join(entry.tags[:12])}{', ...' if len(entry.tags) > 12 else ''}")
        lines.append(f"    published: {entry.figures}")
        lines.append("    decisions: " + ("the published per-tag thresholds (score > threshold)" if entry.thresholds
                                          else "no published thresholds: --threshold P or --top-k N"))
        lines.append(f"    cite: {entry.citation}")
        lines.append(f"    source: {entry.upstream}")
    lines.append(f"\ncache: {home()} ({HOME_ENV}); mirror: {os.environ.get(MIRROR_ENV) or '(none)'} ({MIRROR_ENV})")
    return "\n".join(lines)


def no_thresholds_message(source: dict | None, where: object) -> str:
    """One line for ``--threshold tuned`` on a package without per-tag thresholds: why, and what to do
    instead. ``source``: the package's ``source`` record; ``where``: its path (or name)."""
    instead = ("use --threshold P (one probability for every tag, e.g. --threshold 0.5) or read the ranking "
               "(--top-k N)")
    pretrained = (source or {}).get("pretrained") if isinstance(source, dict) else None
    if isinstance(pretrained, dict) and pretrained.get("name"):
        name = pretrained["name"]
        entry = get_entry(name) if is_pretrained_name(name) else None
        if entry is not None and entry.thresholds is not None and pretrained.get("converter") != CONVERTER_VERSION:
            return (f"{name}: this cached copy predates its published thresholds; run `musetag pull {name}` to "
                    f"fetch them, or {instead}")
        why = pretrained.get("no_thresholds") or (entry.no_thresholds if entry is not None else "") \
            or "its authors published none"
        return (f"{name} has no published per-tag thresholds ({why}); {instead}, or fine-tune it on your labels "
                "(`musetag train --init-from`) and package the run, whose validation tunes them")
    return (f"{where}: this package has no tuned thresholds (its run tuned none); {instead}, or package a "
            "multilabel run whose validation tuned them (`musetag package RUN --out MODEL`)")
