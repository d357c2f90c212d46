"""Transfer learning: start a model from another model's weights.

The SoundFusion seed trained VGG16 on GTZAN and reused its weights for FMA; the MediaEval systems
start from ImageNet backbones. :func:`init_from` does this for any musetag model:

1. :func:`load_source` reads the weights (through :func:`musetag.models.weights.read_weights`) from a
   training run folder (``RUN_DIR``: its SWA, else best, else last checkpoint), a checkpoint file
   (``.pt``), a model package (folder or archive), or a raw weights file (``.safetensors``,
   ``.pt``/``.pth``/``.bin``/``.ckpt`` holding a ``state_dict``, for example timm ImageNet weights
   downloaded elsewhere or another toolkit's checkpoint). Nothing is ever downloaded.
2. A *key mapping* renames the source's keys to the target's (see below).
3. Every source tensor whose name and shape match a target tensor is loaded. A first convolution
   trained on 3-channel images is adapted to 1- or 2-channel spectrograms
   (:func:`musetag.models.weights.adapt_input_weight`, as timm's ``adapt_input_conv``: the RGB filters
   are summed). The classifier is re-created for the new
   tag set: when the source's tags are known, the rows of tags the two share are copied (a
   fine-tune on a superset of tags keeps what was learnt), the others start fresh.
4. A :class:`TransferReport` lists what was loaded, adapted, skipped (and why), and which target
   weights keep their random initialisation; the training loop writes it to ``RUN_DIR/transfer.json``.

:class:`StageFreezer` freezes the first N *stages* (the model's top-level blocks, see
:func:`model_stages`) for the first K epochs: the training loop calls ``freezer.apply(epoch)``
after ``model.train()`` at the start of every epoch.

Key mappings
------------
A mapping is a callable ``fn(state_dict, model) -> state_dict`` returning the source weights
renamed (and possibly transformed) to the target model's names. Pass it as ``key_map=`` or, from
the command line and TOML, as ``--init-map SPEC`` where SPEC is

- the name of a registered mapping (:func:`list_key_mappings`): ``strip-wrappers`` (DataParallel /
  DDP / ``AveragedModel`` ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes; always applied),
  ``lightning`` (drops the ``model.`` prefix of a PyTorch Lightning module), ``timm`` (a bare timm
  model's weights onto musetag's ``timm:<name>`` models and timm-based backbones), ``mtg-baseline`` and
  ``won2020`` (published upstream weights onto their exact zoo re-implementations, strict; also
  :func:`musetag.models.weights.convert_upstream` without a target model, see :mod:`musetag.inference.upstream`);
- ``prefix:OLD=NEW`` to rename a prefix (``prefix:encoder.=features.``; ``prefix:backbone.=`` drops
  one), several separated by ``;``;
- ``package.module:function`` or ``path/to/file.py:function``: your own callable.

Register your own with ``@register_key_mapping("name")``; the registry, the file reader and the
upstream renames are :mod:`musetag.models.weights`.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.training.freezing import StageFreezer, model_stages
from musetag.models.weights import (
    KeyMap,
    adapt_input_weight,
    classifier_prefix,
    find_checkpoint,
    flush_denormals,
    get_key_mapping,
    list_key_mappings,
    read_weights,
    tensors_only,
)

log = logging.getLogger(__name__)

#: below this fraction of its parameters matched, an --init-from source is another architecture, not a start
NEARLY_NOTHING = 0.01

__all__ = [
    "SourceWeights",
    "TransferReport",
    "StageFreezer",
    "load_source",
    "init_from",
    "transfer_weights",
    "model_from_source",
    "model_stages",
]

RAW_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


# ------------------------------------------------------------------------------------ sources


@dataclass
class SourceWeights:
    """Weights to start from, with what is known about where they come from."""

    state_dict: dict[str, torch.Tensor]
    origin: str
    kind: str  # "run" | "checkpoint" | "package" | "weights"
    model: dict[str, Any] | None = None  # {"name", "args"} when the source is a musetag model
    tags: list[str] | None = None
    features: dict[str, Any] | None = None
    task: str | None = None




def load_source(source: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module, *,
                option: str = "--init-from") -> SourceWeights:
    """Read the weights to transfer from a run folder, checkpoint, package, raw weights file,
    an in-memory ``state_dict`` or a model. ``option``: the command-line option named in errors."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "musetag_config", None) or None
        return SourceWeights(dict(source.state_dict()), type(source).__name__, "model", model=cfg)
    if isinstance(source, Mapping):
        return SourceWeights(tensors_only(source), "state_dict", "weights")
    from musetag.inference.hub import resolve
    from musetag.inference import package as pkg

    path = resolve(source)
    if not path.exists():
        raise ModelError(
            f"{option} {path}: no such file or folder; give a run folder of `musetag train`, a checkpoint "
            "(.pt), a model package, a local weights file (.safetensors/.pt), or a pretrained model's name "
            "(`musetag models --pretrained`)."
        )
    if path.is_dir() and (path / pkg.DESCRIPTION_FILE).is_file() or path.is_file() and pkg.is_archive(path):
        p = pkg.load_package(path)
        return SourceWeights(
            dict(p.state_dict or {}), str(path), "package", model={"name": p.model_name, "args": p.model_args},
            tags=list(p.tags), features=dict(p.features), task=p.task,
        )
    if path.is_dir():
        ckpt_path = find_checkpoint(path, "auto")
        src = _load_checkpoint_file(ckpt_path, option)
        src.kind, src.origin = "run", f"{path} ({ckpt_path.name})"
        return src
    if path.suffix.lower() not in RAW_SUFFIXES:
        raise ModelError(
            f"{option} {path}: unknown weights format {path.suffix or '(no extension)'}; expected a run folder, "
            f"a model package, or one of {', '.join(RAW_SUFFIXES)}"
        )
    return _load_checkpoint_file(path, option)


def _load_checkpoint_file(path: Path, option: str = "--init-from") -> SourceWeights:
    weights = read_weights(path, what=f"{option} weights")
    ckpt = weights.checkpoint
    if ckpt is None:
        return SourceWeights(weights.state_dict, str(path), "weights")
    return SourceWeights(
        weights.state_dict, str(path), "checkpoint", model=dict(ckpt["model"]),
        tags=list(ckpt.get("tags") or []) or None, features=ckpt.get("features"), task=ckpt.get("task"),
    )


# ------------------------------------------------------------------------------------ transfer


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did. ``summary()`` is the text ``musetag train`` prints."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # input convolutions summed over RGB
    classifier_rows: dict[str, list[str]] = field(default_factory=dict)  # key -> tags copied
    skipped_shape: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)
    flushed_subnormals: int = 0  # subnormal source weights set to zero (see transfer_weights)
    unused: list[str] = field(default_factory=list)  # source keys with no target
    not_initialised: list[str] = field(default_factory=list)  # target keys left at random init
    loaded_parameters: int = 0
    total_parameters: int = 0
    frozen_stages: list[str] = field(default_factory=list)

    @property
    def fraction_loaded(self) -> float:
        return self.loaded_parameters / max(1, self.total_parameters)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fraction_loaded"] = round(self.fraction_loaded, 6)
        return d

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    def summary(self, max_items: int = 6) -> str:
        def few(items: Sequence[Any]) -> str:
            from musetag.errors import shortlist

            return shortlist([i if isinstance(i, str) else f"{i[0]} {tuple(i[1])}->{tuple(i[2])}" for i in items], max_items)

        lines = [
            f"init from {self.source}: loaded {len(self.loaded)} tensors "
            f"({self.loaded_parameters:,} of {self.total_parameters:,} parameters, {self.fraction_loaded:.1%})"
        ]
        if self.adapted:
            lines.append(f"  adapted to the input channels: {few(self.adapted)}")
        if self.classifier_rows:
            tags = next(iter(self.classifier_rows.values()))
            lines.append(f"  classifier rows kept for {len(tags)} shared tags: {few(tags)}")
        if self.skipped_classifier:
            lines.append(f"  classifier re-created for the new tags (skipped {few(self.skipped_classifier)})")
        if self.flushed_subnormals:
            lines.append(f"  subnormal weights set to zero: {self.flushed_subnormals:,}")
        if self.skipped_shape:
            lines.append(f"  skipped, shape differs: {few(self.skipped_shape)}")
        if self.unused:
            lines.append(f"  source weights with no counterpart: {few(self.unused)}")
        if self.not_initialised:
            lines.append(f"  left at random initialisation: {few(self.not_initialised)}")
        if self.frozen_stages:
            lines.append(f"  frozen stages: {', '.join(self.frozen_stages)}")
        return "\n".join(lines)




def transfer_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module | SourceWeights,
    *,
    key_map: str | KeyMap | None = None,
    tags: Sequence[str] | None = None,
    source_tags: Sequence[str] | None = None,
    keep_classifier: bool | None = None,
    adapt_input_channels: bool = True,
    min_fraction: float = 0.0,
    option: str = "--init-from",
) -> TransferReport:
    """Load into ``model`` every source weight whose (mapped) name and shape match.

    ``tags``: the target's tag list; with ``source_tags`` (read from the source when it is a
    musetag run/checkpoint/package) the classifier rows of shared tags are copied. The classifier
    is otherwise left freshly initialised, unless ``keep_classifier=True`` (same tags, same order).
    Raises :class:`ModelError` when nothing matches (wrong architecture or mapping), or when less than
    ``min_fraction`` of the parameters could be loaded.
    """
    src = source if isinstance(source, SourceWeights) else load_source(source, option=option)
    mapped = get_key_mapping(key_map)(dict(src.state_dict), model)
    source_tags = list(source_tags) if source_tags is not None else src.tags
    target = model.state_dict()
    report = TransferReport(source=src.origin)
    head = classifier_prefix(model)
    same_tags = tags is not None and source_tags is not None and list(tags) == list(source_tags)
    if keep_classifier is None:
        keep_classifier = same_tags
    first_conv = next((k for k, v in target.items() if k.endswith("weight") and v.dim() == 4), None)
    new_state: dict[str, torch.Tensor] = {}
    for key, value in mapped.items():
        if key not in target:
            report.unused.append(key)
            continue
        tgt = target[key]
        if head and key.startswith(head) and not keep_classifier:
            rows = _classifier_rows(value, tgt, tags, source_tags)
            if rows is None:
                report.skipped_classifier.append(key)
                continue
            merged, shared = rows
            new_state[key] = merged
            report.classifier_rows[key] = shared
            continue
        if tuple(value.shape) == tuple(tgt.shape):
            new_state[key] = value.to(dtype=tgt.dtype)
            report.loaded.append(key)
        elif (adapt_input_channels and key == first_conv and value.dim() == 4 and tgt.dim() == 4
              and value.shape[0] == tgt.shape[0] and value.shape[2:] == tgt.shape[2:]):
            new_state[key] = adapt_input_weight(value, tgt.shape[1]).to(dtype=tgt.dtype)
            report.adapted.append(key)
        else:
            report.skipped_shape.append((key, list(value.shape), list(tgt.shape)))
    if not report.loaded and not report.adapted:
        examples_src = ", ".join(list(mapped)[:4])
        examples_tgt = ", ".join(list(target)[:4])
        raise ModelError(
            f"{option} {src.origin}: no weight matches the model by name and shape (source keys like "
            f"{examples_src}; model keys like {examples_tgt}). Use the same architecture, or a key mapping "
            f"({option.replace('-from', '-map')} {', '.join(list_key_mappings())}, prefix:OLD=NEW, or module:function)"
        )
    model.load_state_dict(new_state, strict=False)
    # published weights can hold subnormal floats (jamendo-musicnn: 98,417) that x86 multiplies in microcode:
    # zeroed here as ModelPackage.build_model does, or a fine-tune of them runs ~7x slower on a CPU
    report.flushed_subnormals = flush_denormals(model)
    params = dict(model.named_parameters())
    report.total_parameters = sum(p.numel() for p in params.values())
    report.loaded_parameters = sum(
        params[k].numel() for k in [*report.loaded, *report.adapted] if k in params
    )
    report.not_initialised = [k for k in target if k not in new_state and not k.endswith("num_batches_tracked")]
    if report.fraction_loaded < NEARLY_NOTHING:  # a bias or two that happen to share a name and shape
        raise ModelError(
            f"{option} {src.origin}: only {report.loaded_parameters:,} of the model's {report.total_parameters:,} "
            f"parameters match by name and shape ({', '.join([*report.loaded, *report.adapted][:3])}): it is another "
            "architecture. Use a package or run of the same model, or a key mapping "
            f"({option.replace('-from', '-map')} {', '.join(list_key_mappings())}, prefix:OLD=NEW, or module:function)"
        )
    if report.fraction_loaded < min_fraction:
        raise ModelError(
            f"{option} {src.origin}: only {report.fraction_loaded:.1%} of the parameters matched "
            f"(minimum {min_fraction:.0%}); check the architecture or give a key mapping "
            f"({option.replace('-from', '-map')})"
        )
    if report.fraction_loaded < 0.5:
        log.warning("only %.1f%% of the parameters were loaded from %s; is it the same architecture?",
                    100 * report.fraction_loaded, src.origin)
    return report


def _classifier_rows(value, tgt, tags, source_tags):
    """Copy the rows of shared tags from a source classifier tensor; None when not applicable."""
    if tags is None or source_tags is None or value.dim() == 0 or tgt.dim() == 0:
        return None
    if value.shape[0] != len(source_tags) or tgt.shape[0] != len(tags) or value.shape[1:] != tgt.shape[1:]:
        return None
    src_index = {t: i for i, t in enumerate(source_tags)}
    shared = [t for t in tags if t in src_index]
    if not shared:
        return None
    merged = tgt.clone()
    for j, t in enumerate(tags):
        if t in src_index:
            merged[j] = value[src_index[t]].to(dtype=tgt.dtype)
    return merged, shared


def model_from_source(source: str | os.PathLike | SourceWeights, n_classes: int, **overrides: Any) -> nn.Module:
    """A new model with the source's architecture (same name/arguments) and ``n_classes`` outputs."""
    from musetag.models import create_model

    src = source if isinstance(source, SourceWeights) else load_source(source)
    if not src.model:
        raise ModelError(
            f"{src.origin} holds bare weights without a musetag architecture; name the model in the config "
            "(model.name) and the weights are matched onto it"
        )
    args = {**dict(src.model.get("args") or {}), **overrides, "n_classes": int(n_classes)}
    return create_model(src.model["name"], **args)


def init_from(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module,
    *,
    tags: Sequence[str] | None = None,
    key_map: str | KeyMap | None = None,
    freeze_stages: int = 0,
    freeze_epochs: int | None = None,
    log_summary: bool = True,
) -> tuple[TransferReport, StageFreezer | None]:
    """What ``musetag train --init-from`` does: transfer the weights, then (optionally) build the
    :class:`StageFreezer` for the first ``freeze_stages`` stages over ``freeze_epochs`` epochs
    (None: the whole training). Returns ``(report, freezer or None)``."""
    report = transfer_weights(model, source, key_map=key_map, tags=tags)
    freezer = None
    if freeze_stages:
        freezer = StageFreezer(model, freeze_stages, freeze_epochs)
        report.frozen_stages = freezer.stage_names
    if log_summary:
        log.info("%s", report.summary())
    return report, freezer
