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

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musetag.errors import ModelError

log = logging.getLogger(__name__)

#: the model ``musetag tag`` / ``musetag serve`` use when none is given
DEFAULT_MODEL = "mtg-jamendo-baseline"
#: bump when the conversion changes: cached packages written by an older converter are rebuilt
#: (2: the published per-tag thresholds are part of the package)
CONVERTER_VERSION = 2
MIRROR_ENV = "MUSETAG_MODEL_MIRROR"
HOME_ENV = "MUSETAG_HOME"

_MOODTHEME = (
    "action adventure advertising background ballad calm children christmas commercial cool corporate dark deep "
    "documentary drama dramatic dream emotional energetic epic fast film fun funny game groovy happy heavy holiday "
    "hopeful inspiring love meditative melancholic melodic motivational movie nature party positive powerful "
    "relaxing retro romantic sad sexy slow soft soundscape space sport summer trailer travel upbeat uplifting"
).split()
# MTG-Jamendo top-50, sorted as upstream's LabelBinarizer sorts the prefixed names (genre, instrument, mood)
_JAMENDO_TOP50 = [f"genre---{t}" for t in (
    "alternative ambient atmospheric chillout classical dance downtempo easylistening electronic experimental folk "
    "funk hiphop house indie instrumentalpop jazz lounge metal newage orchestral pop popfolk poprock reggae rock "
    "soundtrack techno trance triphop world").split()] + [f"instrument---{t}" for t in (
    "acousticguitar bass computer drummachine drums electricguitar electricpiano guitar keyboard piano strings "
    "synthesizer violin voice").split()] + [f"mood/theme---{t}" for t in "emotional energetic film happy relaxing".split()]
# MagnaTagATune top-50 in upstream's split/mtat/tags.npy order
_MTAT = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
    "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
    "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
    "no voice", "weird", "country", "metal", "female voice", "choral",
]
# Million Song Dataset (Last.fm) top-50 in upstream's split/msd/50tagList.txt order
_MSD = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad",
    "House", "happy",
]

_WON_REPO, _WON_COMMIT = "minzwon/sota-music-tagging-models", "ffcd1f90b97a1e923a50c6e5283f147cf9dd7dfd"
_WON_CITATION = ("Won, Ferraro, Bogdanov, Serra (2020). Evaluation of CNN-based automatic music tagging models. "
                 "Proc. 17th Sound and Music Computing Conference (SMC).")
_ARCH_CITATION = {
    "fcn": "Choi, Fazekas, Sandler (2016). Automatic tagging using deep convolutional neural networks. ISMIR.",
    "musicnn": "Pons, Nieto, Prockup, Schmidt, Ehmann, Serra (2018). End-to-end learning for music audio tagging "
               "at scale. ISMIR.",
    "crnn": "Choi, Fazekas, Sandler, Cho (2017). Convolutional recurrent neural networks for music classification. "
            "ICASSP.",
}
_DATASET = {"jamendo": ("MTG-Jamendo top-50 tags", _JAMENDO_TOP50),
            "mtat": ("MagnaTagATune top-50 tags", _MTAT),
            "msd": ("Million Song Dataset (Last.fm) top-50 tags", _MSD)}


@dataclass(frozen=True)
class PinnedFile:
    """One more upstream file of a catalogue entry, pinned and fetched like the weights (cache, mirror, URL)."""

    name: str  # its name in the download cache
    url: str
    sha256: str
    size: int
    mirror_path: str
    upstream: str  # repository@commit:path
    model: str = ""  # the catalogue entry it belongs to (what `musetag pull` is given)


@dataclass(frozen=True)
class Pretrained:
    """One catalogue entry: where the upstream file is and what it is."""

    name: str
    description: str
    upstream_tags: tuple[str, ...]  # output order, as upstream names them (category prefixes kept)
    url: str
    sha256: str
    size: int
    mirror_path: str  # relative path of the file inside a mirror folder ($MUSETAG_MODEL_MIRROR)
    licence: str
    citation: str
    upstream: str  # repository@commit:path
    figures: str  # published results, with where they come from
    task: str = "multilabel"
    trained_on: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the per-tag decision thresholds upstream published for these weights (None: none published)
    thresholds: PinnedFile | None = None
    #: why there are no published thresholds, when that needs saying (shown by ``--threshold tuned``)
    no_thresholds: str = ""

    @property
    def tags(self) -> list[str]:
        """Tag names musetag shows: upstream's, without MTG-Jamendo's ``category---`` prefixes (the rule of
        :func:`musetag.data.tags.strip_prefix`, which the data stage owns; the catalogue comes before it)."""
        return [t.split("---", 1)[1] if "---" in t else t for t in self.upstream_tags]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "task": self.task, "n_tags": len(self.tags),
                "tags": self.tags, "trained_on": self.trained_on, "licence": self.licence, "citation": self.citation,
                "upstream": self.upstream, "url": self.url, "sha256": self.sha256, "bytes": self.size,
                "figures": self.figures,
                "thresholds": None if self.thresholds is None else dataclasses.asdict(self.thresholds)}


def _won(dataset: str, arch: str, sha256: str, size: int, figures: str) -> Pretrained:
    what, tags = _DATASET[dataset]
    path = f"models/{dataset}/{arch}/best_model.pth"
    window = "3 s" if arch == "musicnn" else "29 s"
    return Pretrained(
        name=f"{dataset}-{arch}",
        description=f"Won et al. 2020 {arch.upper() if arch != 'musicnn' else 'Musicnn'} on {what} "
                    f"(16 kHz mel front end inside the model; 16 evenly spaced {window} chunks averaged)",
        upstream_tags=tuple(tags), url=f"https://raw.githubusercontent.com/{_WON_REPO}/{_WON_COMMIT}/{path}",
        sha256=sha256, size=size, mirror_path=f"sota-music-tagging/{dataset}/{arch}/best_model.pth",
        licence="MIT (Copyright 2020 Music Technology Group, Universitat Pompeu Fabra; code by Minz Won)",
        citation=f"{_WON_CITATION} Architecture: {_ARCH_CITATION[arch]}",
        upstream=f"{_WON_REPO}@{_WON_COMMIT}:{path}", figures=figures, trained_on=what,
    )


_CATALOGUE: dict[str, Pretrained] = {}


def _add(entry: Pretrained) -> None:
    _CATALOGUE[entry.name] = entry


_BASELINE_PATH = "scripts/baseline/models/best_model.pth"
_BASELINE_COMMIT = "1b4fa8c32e076c73b5175c1703ae805b4109309d"
_BASELINE_THRESHOLDS = "results/mediaeval/baseline_vggish_thresholds.txt"
_add(Pretrained(
    name="mtg-jamendo-baseline",
    description="MediaEval 2019-2021 organisers' baseline (VGG-ish, after Choi et al. 2016) on the 56 MTG-Jamendo "
                "mood/theme tags; official Essentia mel-spectrogram of the centred 29.1 s excerpt",
    upstream_tags=tuple(f"mood/theme---{t}" for t in _MOODTHEME),
    url=f"https://raw.githubusercontent.com/MTG/mtg-jamendo-dataset/{_BASELINE_COMMIT}/{_BASELINE_PATH}",
    sha256="c1d6bee6bc25d78b28cea52bde68a353b3e674687171a78af020fa039d3cbdbe", size=1_803_131,
    mirror_path="mtg-jamendo-baseline/best_model.pth",
    licence="Apache-2.0 (MTG/mtg-jamendo-dataset code and model); MTG-Jamendo metadata CC BY-NC-SA 4.0",
    citation="Bogdanov, Porter, Tovstogan, Won (2019). MediaEval 2019: Emotion and Theme Recognition in Music "
             "Using Jamendo. MediaEval 2019 Workshop.",
    upstream=f"MTG/mtg-jamendo-dataset@{_BASELINE_COMMIT}:{_BASELINE_PATH}",
    figures="MTG-Jamendo split-0 test (MediaEval): PR-AUC-macro 0.1077, ROC-AUC-macro 0.7258 (official results)",
    trained_on="MTG-Jamendo mood/theme (56 tags), split-0",
    thresholds=PinnedFile(
        name="mtg-jamendo-baseline-thresholds",
        url=f"https://raw.githubusercontent.com/MTG/mtg-jamendo-dataset/{_BASELINE_COMMIT}/{_BASELINE_THRESHOLDS}",
        sha256="ad32f50886897b71a1b1e84122da0ff7f89d53c71ca7f4e1609926e8cb50937a", size=2_282,
        mirror_path="mtg-jamendo-baseline/baseline_vggish_thresholds.txt",
        upstream=f"MTG/mtg-jamendo-dataset@{_BASELINE_COMMIT}:{_BASELINE_THRESHOLDS}", model="mtg-jamendo-baseline"),
))
_add(dataclasses.replace(
    _CATALOGUE["mtg-jamendo-baseline"], name="mtg-jamendo-baseline-whole",
    description="The MediaEval baseline over the whole song: 29.1 s excerpts spread from start to end (as many as "
                "cover it), probabilities averaged; same weights, official front end. Upstream scored only the "
                "centred excerpt (mtg-jamendo-baseline)",
    figures="same weights as mtg-jamendo-baseline; the published figures are for its centred excerpt",
    extra={"upstream": "mtg-jamendo-baseline", "segment": "whole_song"},
    thresholds=None,
    no_thresholds="the published thresholds were tuned on the centred excerpt (mtg-jamendo-baseline has them), "
                  "not on whole-song averages",
))
_add(_won("jamendo", "fcn", "7bce08a66dbc70d096b0a330f44b4cacd9aa25519b83489fbb98f2164a194e2b", 1_902_815,
          "MTG-Jamendo top-50 test: ROC-AUC-macro 0.8253 (philtgun/music-tagging-benchmark evaluation.txt)"))
_add(_won("jamendo", "musicnn", "66280f4859376377c47f64313c7ac889a3201fdb06a01bf6e94ac6e619081bb5", 3_257_168,
          "MTG-Jamendo top-50 test: ROC-AUC-macro 0.8216 (philtgun/music-tagging-benchmark evaluation.txt)"))
_add(_won("jamendo", "crnn", "0a558989c0793f488cb677d188464c91f47c007f7c70473230e55537ca598215", 1_687_626,
          "MTG-Jamendo top-50: see Won et al. 2020"))
_add(_won("mtat", "fcn", "3bfc67e43f3e180194ab5993c947ffbf44b1a23dcdf42c374b1ced9d4d4de72e", 1_902_811,
          "MagnaTagATune top-50: see Won et al. 2020, results table"))
_add(_won("mtat", "musicnn", "0a7ac8aa3daab3a1c59cae16a771b0bfa4064ac94502ebc990a5c32a2771e189", 3_257_164,
          "MagnaTagATune top-50: see Won et al. 2020, results table"))
_add(_won("msd", "fcn", "6012aa7eecf864a8081faedca56af054521e8dfb9c5c98659a3dd5d3e1e66f21", 1_902_815,
          "Million Song Dataset top-50: see Won et al. 2020, results table"))
_add(_won("msd", "crnn", "ebb99855ed0c83f38845db9cfb383dd6fc70938bc58701dcb66e18af9ee7fbea", 1_687_711,
          "Million Song Dataset top-50: see Won et al. 2020, results table"))


# -- catalogue --------------------------------------------------------------------------------------------


def catalogue() -> dict[str, Pretrained]:
    """Every pretrained model musetag can pull, by name."""
    return dict(_CATALOGUE)


def is_pretrained_name(text: Any) -> bool:
    return isinstance(text, str) and text in _CATALOGUE


def get_entry(name: str) -> Pretrained:
    if name not in _CATALOGUE:
        import difflib

        close = difflib.get_close_matches(name, list(_CATALOGUE), n=3)
        raise ModelError(f"unknown pretrained model {name!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else "")
                         + " (`musetag models --pretrained` lists them)")
    return _CATALOGUE[name]


# -- cache ------------------------------------------------------------------------------------------------


def home() -> Path:
    """The cache folder: ``$MUSETAG_HOME``, else ``$XDG_CACHE_HOME/musetag``, else ``~/.cache/musetag``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "musetag"


def download_path(entry: Pretrained | PinnedFile) -> Path:
    suffix = Path(entry.mirror_path).suffix or ".pth"
    return home() / "downloads" / f"{entry.name}-{entry.sha256[:12]}{suffix}"


def package_dir(name: str) -> Path:
    return home() / "models" / name


def _package_state(folder: Path, entry: Pretrained) -> str:
    """``"current"``, ``"missing"``, ``"stale"`` (another converter or pinned file) or ``"damaged"`` (its weights
    no longer match the SHA-256 its description records: a tampered or half-written cache)."""
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
        log.warning("the cached package %s is damaged (its weights differ from the SHA-256 it records); "
                    "converting it again from the verified upstream file", folder)
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
    for entry in _CATALOGUE.values():
        cached = "yes" if _package_is_current(package_dir(entry.name), entry) else "no"
        rows.append((entry.name, f"{len(entry.tags)} {entry.task}", f"{entry.size / 1e6:.1f} MB", cached,
                     entry.licence.split(" (")[0].split(";")[0]))
    head = ("name", "tags", "size", "cached", "licence")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines.append("")
    for entry in _CATALOGUE.values():
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
