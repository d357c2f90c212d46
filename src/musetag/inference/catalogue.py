"""The pretrained catalogue: every model musetag can pull, with its pinned files, tags, licence and figures.

Data only (plus lookups); :mod:`musetag.inference.hub` fetches, caches and converts the entries.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from musetag.errors import ModelError

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
