"""Self-describing model packages: everything tagging needs, nothing it could get wrong.

A package is a folder (or a ``.zip`` / ``.tar`` / ``.tar.gz`` archive of one) holding

``model.safetensors``
    the network weights (safetensors: no pickle, loads without running code);
``musetag.json``
    the description: ``format`` (package format version), ``musetag_version`` (who wrote it),
    ``model`` {``name``, ``args``} (rebuilt with :func:`musetag.models.create_model`), ``features``
    (:class:`musetag.features.FeatureConfig` as a dict, with the dataset ``mean``/``std``), ``tags``
    (the vocabulary in output order), ``task`` (``multilabel`` | ``multiclass``), ``thresholds``
    (per-tag decision thresholds tuned on validation, an entry ``null`` for a tag never on, or ``null``),
    ``segment`` {``frames`` (or
    ``samples`` for waveform models), ``hop``, ``aggregation``}, ``weights`` {``file``, ``sha256``,
    ``bytes``} and ``source`` (the run folder and checkpoint it came from, or for converted
    published weights where they were downloaded from: ``url``, ``commit``, ``sha256``...).
    Optional: ``licence`` (of the weights, e.g. ``"MIT"``) and ``citation`` (the paper to cite),
    shown by :meth:`ModelPackage.about`.

``segment`` rules (key ``rule``, default ``"regular"``):

``"regular"``
    features of the whole file, cut into windows of ``frames`` (``samples`` for waveform
    features) every ``hop`` (default: the length), at most ``max_segments`` of them; ``frames`` 0
    is the whole file at once. The rule training evaluates with
    (:func:`musetag.inference.segments.segment_starts`).
``"evenly_spaced"``
    ``{"rule": "evenly_spaced", "samples": L, "count": N, "aggregation": ...}``: the evaluation
    protocol of Won et al. 2020. The decoded audio (``n`` samples at the features' rate) is cut
    into ``N`` chunks of ``L`` samples, chunk ``i`` = samples ``[i * hop, i * hop + L)`` with
    ``hop = (n - L) // N``; features are then computed per chunk (for waveform features the chunk
    is the model input). ``count`` 0 = as many chunks as needed to cover the file,
    ``ceil(n / L)``, spread from the start to the end (``hop = (n - L) // (count - 1)``).
``"centre_excerpt"``
    ``{"rule": "centre_excerpt", "samples": L, "aggregation": ...}``: one chunk of ``L`` samples
    starting at ``(n - L) // 2`` (the MTG-Jamendo baseline's 29.1 s excerpt, ``L`` = 349,200 at
    12 kHz), features computed from that audio only.

Optional for every rule: ``max_overlap`` (a fraction of the window length, 0.5 in the backbone + probe
packages of embeddings made with ``windows=fit``): consecutive windows overlap by at most that much
(``regular``: the hop is raised; ``evenly_spaced``: fewer chunks, spread from the start to the end,
:func:`musetag.inference.segments.audio_chunk_starts`).

For both audio rules ``samples`` is the length in samples at the features' sample rate, ``hop``
and ``max_segments`` are not used (an error), and a file shorter than ``L`` gives one chunk: the
whole file zero-padded at the end to ``L`` samples; the result is flagged
(a ``too_short`` warning, :attr:`musetag.inference.tagger.TagResult.warnings`). The model window is then ``L`` samples (waveform)
or the frames of ``L`` samples (mel: ``features.n_frames(L)``).

Loading checks the format and musetag versions and the weights' checksum, and every failure says
what is wrong and how to fix it, so tagging can never silently drift from what was trained.

One file on purpose (about 590 lines): the format's description, its checks, the writer and the bounded
reader must agree on every field; a package made from a training run is :mod:`musetag.tag.package_from_run`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musetag.errors import ModelError
from musetag.evaluate.aggregation import AGGREGATIONS as WINDOW_RULES
from musetag.evaluate.thresholds import thresholds_from_json, thresholds_to_json
from musetag.inference.package_files import (
    DESCRIPTION_FILE, WEIGHTS_FILE, _is_int, declared_weights_bytes, read_members, write_archive,
)
from musetag.outputs import write_bytes_atomic

PACKAGE_FORMAT = 1
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
AGGREGATIONS = (*WINDOW_RULES, "embedding_mean")  # the last: backbone + probe packages
SEGMENT_RULES = ("regular", "evenly_spaced", "centre_excerpt")
AUDIO_RULES = ("evenly_spaced", "centre_excerpt")
TASKS = ("multilabel", "multiclass", "regression")


def _installed_version() -> str:
    from musetag import __version__

    return __version__


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split(".")[:3]:
        match = re.match(r"\d+", piece)
        parts.append(int(match.group()) if match else 0)
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def is_archive(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


@dataclass
class ModelPackage:
    """A loaded (validated) model package. ``state_dict`` holds the weights as CPU tensors (read from a
    package file: a :class:`~musetag.inference.lazy_weights.LazyStateDict`, made on first access)."""

    model_name: str
    model_args: dict[str, Any]
    features: dict[str, Any]
    tags: list[str]
    task: str
    segment: dict[str, Any]
    thresholds: list[float] | None = None
    musetag_version: str = ""
    sha256: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    state_dict: dict[str, Any] | None = field(default=None, repr=False)
    licence: str | None = None
    citation: str | None = None

    # -- derived -------------------------------------------------------------------------------
    @property
    def n_tags(self) -> int:
        return len(self.tags)

    @property
    def outputs_phrase(self) -> str:
        """How many outputs, in the task's words: "56 tags", "3 targets" (regression), "10 classes"."""
        word = {"regression": "target", "multiclass": "class"}.get(self.task, "tag")
        return f"{self.n_tags} {word}{'es' if word == 'class' else 's'}" if self.n_tags != 1 else f"1 {word}"

    def feature_config(self):
        from musetag.features import FeatureConfig

        return FeatureConfig.from_dict(dict(self.features))

    @property
    def segment_rule(self) -> str:
        return str(self.segment.get("rule") or "regular")

    @property
    def segment_length(self) -> int:
        """The model window along its last axis: feature frames (mel) or samples (waveform). For an
        audio rule on mel features, the frames computed from one chunk of ``samples``."""
        if self.segment_rule in AUDIO_RULES and "frames" not in self.segment and self.features.get("kind", "mel") == "mel":
            return int(self.feature_config().n_frames(int(self.segment["samples"])))
        return int(self.segment.get("frames", self.segment.get("samples")) or 0)

    @property
    def segment_hop(self) -> int:
        return int(self.segment.get("hop") or self.segment_length)

    @property
    def aggregation(self) -> str:
        return str(self.segment.get("aggregation", "mean"))

    def description(self) -> dict[str, Any]:
        """The ``musetag.json`` content (without the weights)."""
        return {
            "format": PACKAGE_FORMAT,
            "musetag_version": self.musetag_version or _installed_version(),
            "model": {"name": self.model_name, "args": self.model_args},
            "features": self.features,
            "tags": list(self.tags),
            "task": self.task,
            "thresholds": thresholds_to_json(self.thresholds),  # +inf (never on) as null
            "segment": self.segment,
            "weights": {"file": WEIGHTS_FILE, "sha256": self.sha256},
            "source": self.source,
            **({"licence": self.licence} if self.licence else {}),
            **({"citation": self.citation} if self.citation else {}),
        }

    def about(self) -> list[str]:
        """Human-readable lines: model, tags, segmenting, and licence/citation/source when known
        (what listings of installed models show)."""
        seg = dict(self.segment)
        lines = [
            f"model: {self.model_name} ({self.outputs_phrase}, {self.task})",
            f"segment: {seg.get('rule', 'regular')} " + ", ".join(f"{k}={v}" for k, v in seg.items() if k != "rule"),
        ]
        if self.licence:
            lines.append(f"licence: {self.licence}")
        if self.citation:
            lines.append(f"citation: {self.citation}")
        if self.source:
            lines.append("source: " + ", ".join(f"{k}={v}" for k, v in self.source.items() if not isinstance(v, dict)))
        return lines

    def build_model(self):
        """Rebuild the network with :func:`musetag.models.create_model` and load the weights (eval mode)."""
        from musetag.models import create_model
        from musetag.models.weights import flush_denormals

        args = dict(self.model_args)
        args.setdefault("n_classes", self.n_tags)
        try:
            model = create_model(self.model_name, **args)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - name the package and the cause
            raise ModelError(
                f"{self._where()}: cannot rebuild model {self.model_name!r} with arguments {args}: {exc}. "
                "The package may come from a newer musetag; upgrade musetag or re-package the run."
            ) from exc
        if self.state_dict is None:
            raise ModelError(f"{self._where()}: the package was loaded without its weights")
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"{self._where()}: the weights do not fit model {self.model_name!r}: {exc}. "
                "Re-create the package with `musetag package RUN_DIR --out MODEL`."
            ) from exc
        flush_denormals(model)
        model.eval()
        return model

    def _where(self) -> str:
        return f"model package {self.path}" if self.path else "model package"


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _clean_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """CPU, contiguous, unshared tensors; SWA wrappers (``module.`` prefix, ``n_averaged``) removed."""
    import torch

    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if "n_averaged" in tensors and any(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _validate_description(desc: dict[str, Any], where: str) -> None:
    missing = [k for k in ("model", "features", "tags", "task", "segment") if desc.get(k) in (None, "")]
    if missing:
        raise ModelError(f"{where}: missing {', '.join(missing)} in the description; re-create the package")
    if not isinstance(desc["model"], dict) or not desc["model"].get("name"):
        raise ModelError(f"{where}: 'model' must be {{'name': ..., 'args': {{...}}}}, found {desc['model']!r}")
    tags = desc["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise ModelError(f"{where}: 'tags' must be a non-empty list of tag names")
    if len(set(tags)) != len(tags):
        raise ModelError(f"{where}: 'tags' contains duplicates")
    if desc["task"] not in TASKS:
        raise ModelError(f"{where}: task {desc['task']!r} is not one of {', '.join(TASKS)}")
    seg = desc["segment"]
    if isinstance(seg, dict) and seg.get("rule", "regular") != "regular":
        _validate_audio_rule(seg, where)
    length = seg.get("frames", seg.get("samples")) if isinstance(seg, dict) else None
    if length is None or int(length) < 0:
        raise ModelError(
            f"{where}: segment {seg!r} needs 'frames' (or 'samples'): the window length, 0 for whole files; "
            "pass --segment-seconds to `musetag package`"
        )
    if int(seg.get("hop") or length or 1) <= 0:
        raise ModelError(f"{where}: segment hop must be positive, found {seg.get('hop')!r}")
    overlap = seg.get("max_overlap")
    if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1):
        raise ModelError(f"{where}: segment max_overlap must be a fraction in [0, 1) of the window length "
                         f"(0.5 for embeddings' windows), found {overlap!r}; fix it or remove it")
    if seg.get("aggregation", "mean") not in AGGREGATIONS:
        raise ModelError(
            f"{where}: segment aggregation {seg.get('aggregation')!r} is not one of {', '.join(AGGREGATIONS)}"
        )
    commas = [t for t in tags if "," in t]
    if commas:
        raise ModelError(
            f"{where}: tag {commas[0]!r} contains a comma, and commas separate tags wherever tags are named "
            "(`musetag similar --tags a,b`), so it could never be asked for; rename it (e.g. 'rock/pop') in the "
            "labels and re-train, or edit the tag list of the package"
        )
    declared_weights_bytes(desc, where)
    thresholds = desc.get("thresholds")
    if thresholds is not None and len(thresholds) != len(tags):
        raise ModelError(f"{where}: {len(thresholds)} thresholds for {len(tags)} tags")
    for key in ("licence", "citation"):
        if desc.get(key) is not None and not isinstance(desc[key], str):
            raise ModelError(f"{where}: {key!r} must be a string, found {desc[key]!r}")
    from musetag.inference.checks import check_description_bounds

    check_description_bounds(desc, where)


def _validate_audio_rule(seg: dict[str, Any], where: str) -> None:
    """The audio-domain segment rules (see the module docstring)."""
    rule = seg.get("rule")
    if rule not in SEGMENT_RULES:
        raise ModelError(f"{where}: segment rule {rule!r} is not one of {', '.join(SEGMENT_RULES)}")
    samples = seg.get("samples")
    if not _is_int(samples) or samples <= 0:
        raise ModelError(
            f"{where}: segment rule {rule!r} needs 'samples': the chunk length in samples at the features' "
            f"sample rate (a positive integer), found {samples!r}"
        )
    extra = [k for k in ("frames", "hop", "max_segments") if seg.get(k) is not None]
    if extra:
        raise ModelError(
            f"{where}: segment rule {rule!r} places its chunks itself; remove {', '.join(extra)} from the segment"
        )
    if rule == "evenly_spaced":
        count = seg.get("count")
        if not _is_int(count) or count < 0:
            raise ModelError(
                f"{where}: segment rule 'evenly_spaced' needs 'count': the number of chunks (e.g. 16), or 0 "
                f"for as many as cover the file; found {count!r}"
            )
    elif seg.get("count") is not None:
        raise ModelError(f"{where}: segment rule {rule!r} takes no 'count'")


def save_package(
    out: str | os.PathLike,
    *,
    model_name: str,
    model_args: dict[str, Any],
    state_dict: dict[str, Any],
    features: dict[str, Any],
    tags: list[str],
    task: str,
    segment: dict[str, Any],
    thresholds: list[float] | None = None,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
    licence: str | None = None,
    citation: str | None = None,
) -> Path:
    """Write a package folder, or an archive when ``out`` ends in .zip/.tar/.tar.gz/.tgz. Returns ``out``.

    ``licence`` / ``citation``: optional strings recorded in the description (published weights)."""
    from safetensors.torch import save as st_save

    out = Path(out)
    features = dict(features)
    segment = {k: v for k, v in dict(segment).items() if v is not None}
    segment.setdefault("aggregation", "mean")
    desc = {
        "format": PACKAGE_FORMAT,
        "musetag_version": _installed_version(),
        "model": {"name": model_name, "args": dict(model_args or {})},
        "features": features,
        "tags": [str(t) for t in tags],
        "task": task,
        "thresholds": thresholds_to_json(thresholds),  # +inf (never on) as null
        "segment": segment,
        "weights": {"file": WEIGHTS_FILE},
        "source": dict(source or {}),
    }
    if licence:
        desc["licence"] = licence
    if citation:
        desc["citation"] = citation
    _validate_description(desc, f"package {out}")
    weights = st_save(_clean_state_dict(state_dict), metadata={"format": "pt"})
    desc["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
    desc["weights"]["bytes"] = len(weights)
    text = json.dumps(desc, indent=2, ensure_ascii=False) + "\n"

    if out.exists() and not overwrite:
        raise ModelError(f"{out} already exists; choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_archive(out):
        write_archive(out, {DESCRIPTION_FILE: text.encode("utf-8"), WEIGHTS_FILE: weights})
        return out
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # weights first, description last: a folder with a description always has matching weights
    write_bytes_atomic(out / WEIGHTS_FILE, weights, durable=True)
    write_bytes_atomic(out / DESCRIPTION_FILE, text.encode("utf-8"), durable=True)
    return out


def load_package(path: str | os.PathLike, *, load_weights: bool = True) -> ModelPackage:
    """Read and validate a package folder or archive.

    Raises :class:`ModelError` naming the problem: not a package, unreadable description, a
    package format or musetag version newer than this installation, missing weights, or weights
    whose SHA-256 differs from the recorded one (a damaged or replaced file).

    It reads files only: a pretrained model's name is loaded with
    :func:`musetag.inference.loading.load_model`, which pulls it first.
    """
    path = Path(path)
    where = f"model package {path}"
    desc_bytes, weights = read_members(path)
    try:
        desc = json.loads(desc_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: {DESCRIPTION_FILE} is not valid JSON ({exc}); re-create the package") from exc
    if not isinstance(desc, dict):
        raise ModelError(f"{where}: {DESCRIPTION_FILE} must hold a JSON object")

    fmt = desc.get("format")
    if not isinstance(fmt, int):
        raise ModelError(f"{where}: {DESCRIPTION_FILE} has no integer 'format'; it was not written by musetag")
    written_by = str(desc.get("musetag_version", "?"))
    installed = _installed_version()
    if fmt > PACKAGE_FORMAT:
        raise ModelError(
            f"{where}: package format {fmt} (written by musetag {written_by}) is newer than this musetag "
            f"{installed} reads (format {PACKAGE_FORMAT}); upgrade with `pip install -U 'musetag>={written_by}'`"
        )
    if written_by != "?" and _version_tuple(written_by)[:2] > _version_tuple(installed)[:2]:
        raise ModelError(
            f"{where}: written by musetag {written_by}, but this is musetag {installed}; models and features "
            f"may have changed since. Upgrade with `pip install -U 'musetag>={written_by}'`"
        )
    _validate_description(desc, where)

    weights_info = desc.get("weights") or {}
    expected = weights_info.get("sha256")
    state_dict = None
    if load_weights:
        if weights is None:
            raise ModelError(f"{where}: {WEIGHTS_FILE} is missing; copy the whole package folder")
        if not expected:
            raise ModelError(f"{where}: {DESCRIPTION_FILE} records no weights checksum; re-create the package")
        actual = hashlib.sha256(weights).hexdigest()
        if actual != expected:
            raise ModelError(
                f"{where}: {WEIGHTS_FILE} is damaged or was replaced (sha256 {actual[:12]}..., expected "
                f"{expected[:12]}...); copy the package again or re-create it with `musetag package`"
            )
        from musetag.inference.lazy_weights import LazyStateDict

        # header checked now, tensors made (with torch) only when a torch model is built
        state_dict = LazyStateDict(weights, f"{where}: {WEIGHTS_FILE}")

    return ModelPackage(
        model_name=desc["model"]["name"],
        model_args=dict(desc["model"].get("args") or {}),
        features=dict(desc["features"]),
        tags=list(desc["tags"]),
        task=desc["task"],
        segment=dict(desc["segment"]),
        thresholds=thresholds_from_json(desc.get("thresholds")),
        musetag_version=written_by,
        sha256=expected or "",
        source=dict(desc.get("source") or {}),
        path=path,
        state_dict=state_dict,
        licence=desc.get("licence"),
        citation=desc.get("citation"),
    )
