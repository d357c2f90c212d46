"""Published music-tagging weights and how to turn them into musetag packages.

One entry per catalogue name: the zoo architecture that reproduces the upstream network exactly
(with ``n_classes``), the key mapping of :mod:`musetag.training.transfer` that renames its state dict, the
features (a preset of :mod:`musetag.features`), and the segment rule of the upstream evaluation
(see :mod:`musetag.inference.package`). Tag names, download URLs and checksums belong to the caller
(the pretrained catalogue); this module never downloads anything.

>>> from musetag.inference.upstream import UPSTREAM_MODELS, build_package_from_upstream
>>> entry = UPSTREAM_MODELS["jamendo-musicnn"]          # doctest: +SKIP
>>> sd = torch.load(path, map_location="cpu", weights_only=True)  # doctest: +SKIP
>>> build_package_from_upstream("jamendo-musicnn", sd, tags, "pkgs/jamendo-musicnn",
...     source={"url": ..., "sha256": ...}, licence="MIT", citation="Won et al. 2020 ...")  # doctest: +SKIP

Entries (catalogue name: zoo model, key mapping, features, segment):

* ``mtg-jamendo-baseline``: ``vggish_baseline(act="elu", n_classes=56)``, ``mtg-baseline``,
  ``jamendo96``, ``centre_excerpt`` of 349,200 samples at 12 kHz (96 x 1366 frames).
* ``jamendo-fcn``, ``mtat-fcn``, ``msd-fcn``: ``won_fcn(n_classes=50)``, ``won2020``,
  ``waveform16k``, ``evenly_spaced`` 16 x 464,000 samples.
* ``jamendo-crnn``, ``msd-crnn``: ``won_crnn(n_classes=50)``, same features and segment.
* ``jamendo-musicnn``, ``mtat-musicnn``: ``won_musicnn(n_classes=50, backend=64, dense=200)``,
  ``won2020``, ``waveform16k``, ``evenly_spaced`` 16 x 48,000 samples.

``aggregation: "mean"`` is the mean of the per-chunk sigmoid probabilities, as upstream.
``BASELINE_WHOLE_SONG_SEGMENT`` is an alternative for the baseline that looks at the whole song
(29.1 s chunks spread over the file, probabilities averaged); pass it as ``segment=`` to
:func:`build_package_from_upstream`. The default stays the upstream centred excerpt.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from musetag.errors import ModelError

WON_CITATION = ("Won, Ferraro, Bogdanov, Serra (2020). Evaluation of CNN-based Automatic Music Tagging Models. "
                "Proc. Sound and Music Computing (SMC)")
BASELINE_CITATION = ("Bogdanov, Porter, Tovstogan, Won (2019). MediaEval 2019: Emotion and Theme Recognition in "
                     "Music Using Jamendo. Proc. MediaEval 2019 Workshop")

#: upstream evaluation of Won et al. 2020: 16 evenly spaced chunks, mean of sigmoid outputs
WON_LONG_SEGMENT = {"rule": "evenly_spaced", "samples": 464000, "count": 16, "aggregation": "mean"}
WON_SHORT_SEGMENT = {"rule": "evenly_spaced", "samples": 48000, "count": 16, "aggregation": "mean"}
#: the MTG-Jamendo baseline: the centred 29.1 s excerpt of the 12 kHz audio (96 x 1366 frames)
BASELINE_SEGMENT = {"rule": "centre_excerpt", "samples": 349200, "aggregation": "mean"}
#: whole-song variant for the baseline: ceil(n / 349,200) excerpts spread over the song, averaged
BASELINE_WHOLE_SONG_SEGMENT = {"rule": "evenly_spaced", "samples": 349200, "count": 0, "aggregation": "mean"}


@dataclass(frozen=True)
class UpstreamModel:
    """How one published model becomes a musetag package.

    ``model`` / ``args``: :func:`musetag.models.create_model` arguments (``n_classes`` included);
    ``key_mapping``: the :mod:`musetag.training.transfer` mapping name (also ``convert_upstream(kind, ...)``);
    ``features``: a preset name of :mod:`musetag.features` (or a FeatureConfig dict);
    ``segment``: the package's segment dict; ``task``; ``dataset``: what it was trained on."""

    name: str
    model: str
    args: dict[str, Any]
    key_mapping: str
    features: str | dict[str, Any]
    segment: dict[str, Any]
    dataset: str
    task: str = "multilabel"
    citation: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.args["n_classes"])

    def feature_dict(self) -> dict[str, Any]:
        """The FeatureConfig dict written into the package (the preset as it is now)."""
        from musetag.features import FeatureConfig, get_preset

        if isinstance(self.features, str):
            return get_preset(self.features).to_dict()
        return FeatureConfig.from_dict(dict(self.features)).to_dict()


def _won(name: str, arch: str, dataset: str, **args: Any) -> UpstreamModel:
    segment = WON_SHORT_SEGMENT if arch == "musicnn" else WON_LONG_SEGMENT
    return UpstreamModel(
        name=name, model=f"won_{arch}", args={"n_classes": 50, **args}, key_mapping="won2020",
        features="waveform16k", segment=dict(segment), dataset=dataset, citation=WON_CITATION,
        description=f"Won et al. 2020 {arch} trained on {dataset} (50 tags), 16 kHz audio, "
        f"16 evenly spaced {segment['samples'] // 16000} s chunks averaged",
    )


UPSTREAM_MODELS: dict[str, UpstreamModel] = {
    "mtg-jamendo-baseline": UpstreamModel(
        name="mtg-jamendo-baseline", model="vggish_baseline", args={"n_classes": 56, "act": "elu"},
        key_mapping="mtg-baseline", features="jamendo96", segment=dict(BASELINE_SEGMENT),
        dataset="MTG-Jamendo moodtheme (56 tags)", citation=BASELINE_CITATION,
        description="MediaEval 2019 organisers' VGG-ish baseline, official mel-spectrogram of the centred 29.1 s",
    ),
    "jamendo-fcn": _won("jamendo-fcn", "fcn", "MTG-Jamendo top-50"),
    "jamendo-musicnn": _won("jamendo-musicnn", "musicnn", "MTG-Jamendo top-50", backend=64, dense=200),
    "jamendo-crnn": _won("jamendo-crnn", "crnn", "MTG-Jamendo top-50"),
    "mtat-fcn": _won("mtat-fcn", "fcn", "MagnaTagATune top-50"),
    "mtat-musicnn": _won("mtat-musicnn", "musicnn", "MagnaTagATune top-50", backend=64, dense=200),
    "msd-fcn": _won("msd-fcn", "fcn", "Million Song Dataset top-50"),
    "msd-crnn": _won("msd-crnn", "crnn", "Million Song Dataset top-50"),
}


def get_upstream(name: str) -> UpstreamModel:
    try:
        return UPSTREAM_MODELS[name]
    except KeyError:
        raise ModelError(f"unknown upstream model {name!r}; known: {', '.join(UPSTREAM_MODELS)}") from None


def convert_state_dict(name: str, upstream_state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream weights renamed to the zoo model's keys, checked strictly against it."""
    from musetag.models import create_model
    from musetag.models.weights import convert_upstream

    entry = get_upstream(name)
    model = create_model(entry.model, **entry.args)
    return convert_upstream(entry.key_mapping, upstream_state_dict, model)


def build_model_from_upstream(name: str, upstream_state_dict: Mapping[str, Any]):
    """The zoo model with the upstream weights loaded (eval mode)."""
    from musetag.models import create_model

    entry = get_upstream(name)
    model = create_model(entry.model, **entry.args)
    model.load_state_dict(convert_state_dict(name, upstream_state_dict), strict=True)
    return model.eval()


def build_package_from_upstream(
    name: str,
    upstream_state_dict: Mapping[str, Any],
    tags: list[str],
    out_dir: str | os.PathLike,
    *,
    source: dict[str, Any],
    licence: str,
    citation: str | None = None,
    segment: dict[str, Any] | None = None,
    overwrite: bool = False,
    thresholds: list[float] | None = None,
) -> Path:
    """Write a normal musetag package (``model.safetensors`` + ``musetag.json``) for the
    catalogue entry ``name`` from its upstream state dict (as ``torch.load(..., weights_only=True)``
    returns it). ``tags``: the output names in the model's order (the caller owns them);
    ``source``: where the weights came from (url, commit, sha256...), recorded in the package with
    ``upstream: name``; ``licence`` / ``citation`` (default: the entry's paper) likewise.
    ``segment`` replaces the entry's segment rule (e.g. :data:`BASELINE_WHOLE_SONG_SEGMENT`).
    ``thresholds``: the per-tag decision thresholds upstream published for these weights (output order),
    decided strictly (``score > threshold``), or None.
    Raises :class:`ModelError` when the weights or the tag count do not fit. Returns ``out_dir``."""
    from musetag.inference.package import save_package

    entry = get_upstream(name)
    tags = [str(t) for t in tags]
    if len(tags) != entry.n_classes:
        raise ModelError(f"{name}: {len(tags)} tag names given for a model with {entry.n_classes} outputs")
    state_dict = convert_state_dict(name, upstream_state_dict)
    return save_package(
        out_dir,
        model_name=entry.model,
        model_args=dict(entry.args),
        state_dict=state_dict,
        features=entry.feature_dict(),
        tags=tags,
        task=entry.task,
        segment=dict(segment if segment is not None else entry.segment),
        thresholds=thresholds,
        source={"upstream": name, **dict(source or {})},
        licence=licence,
        citation=citation if citation is not None else entry.citation,
        overwrite=overwrite,
    )
