"""Transfer learning: start a model from another model's weights.

The SoundFusion seed trained VGG16 on GTZAN and reused its weights for FMA; the MediaEval systems
start from ImageNet backbones. :func:`init_from` does this for any musetag model:

1. :func:`load_source` reads the weights from a training run folder (``RUN_DIR``: its SWA, else best,
   else last checkpoint), a checkpoint file (``.pt``), a model package (folder or archive), or a raw
   weights file (``.safetensors``, ``.pt``/``.pth``/``.bin``/``.ckpt`` holding a ``state_dict``,
   for example timm ImageNet weights downloaded elsewhere or another toolkit's checkpoint). Nothing
   is ever downloaded.
2. A *key mapping* renames the source's keys to the target's (see below).
3. Every source tensor whose name and shape match a target tensor is loaded. A first convolution
   trained on 3-channel images is adapted to 1- or 2-channel spectrograms (timm's
   ``adapt_input_conv``: the RGB filters are summed). The classifier is re-created for the new
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
  :func:`convert_upstream` without a target model, see :mod:`musetag.models.upstream`);
- ``prefix:OLD=NEW`` to rename a prefix (``prefix:encoder.=features.``; ``prefix:backbone.=`` drops
  one), several separated by ``;``;
- ``package.module:function`` or ``path/to/file.py:function``: your own callable.

Register your own with ``@register_key_mapping("name")``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musetag.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

__all__ = [
    "SourceWeights",
    "TransferReport",
    "StageFreezer",
    "load_source",
    "init_from",
    "transfer_weights",
    "model_from_source",
    "model_stages",
    "register_key_mapping",
    "get_key_mapping",
    "list_key_mappings",
    "convert_upstream",
    "upstream_model_spec",
]

KeyMap = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]

RAW_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


# ------------------------------------------------------------------------------------ key mappings

_KEY_MAPPINGS: dict[str, tuple[KeyMap, str]] = {}


def register_key_mapping(name: str, description: str = "") -> Callable[[KeyMap], KeyMap]:
    """Decorator: make ``fn(state_dict, model) -> state_dict`` available as ``--init-map name``."""

    def wrap(fn: KeyMap) -> KeyMap:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _KEY_MAPPINGS[name] = (fn, doc)
        return fn

    return wrap


def list_key_mappings() -> dict[str, str]:
    """Registered mapping names and their one-line descriptions."""
    return {name: doc for name, (_, doc) in sorted(_KEY_MAPPINGS.items())}


def _rename_prefix(sd: Mapping[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}


@register_key_mapping("none")
def _identity(sd, model):
    """Keep the source names as they are."""
    return dict(sd)


@register_key_mapping("strip-wrappers")
def strip_wrappers(sd, model):
    """Drop ``module.`` (DataParallel, DDP, AveragedModel) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for k, v in sd.items():
        if k == "n_averaged":
            continue
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if k.startswith(prefix):
                    k, changed = k[len(prefix):], True
        out[k] = v
    return out


@register_key_mapping("lightning")
def lightning(sd, model):
    """PyTorch Lightning checkpoints: drop the ``model.`` (or ``net.``) attribute prefix."""
    sd = strip_wrappers(sd, model)
    for prefix in ("model.", "net."):
        if sd and all(k.startswith(prefix) for k in sd):
            return _rename_prefix(sd, prefix, "")
    return sd


@register_key_mapping("timm")
def timm_backbone(sd, model):
    """A bare timm model's weights (e.g. ImageNet) onto the timm module inside a musetag model."""
    sd = strip_wrappers(sd, model)
    target = model.state_dict()
    if sum(k in target for k in sd) > len(sd) / 2:  # already musetag names
        return sd
    prefix = _timm_prefix(model)
    if prefix is None:
        raise ModelError(
            "--init-map timm: the target model holds no timm module; use it with `timm:<name>` models or "
            "give a prefix mapping (prefix:OLD=NEW)"
        )
    return {prefix + k: v for k, v in sd.items()}


def _timm_prefix(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if name and type(module).__module__.startswith("timm."):
            # the outermost timm module: its children belong to it
            return name + "."
    return None


def _prefix_mapping(spec: str) -> KeyMap:
    pairs = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"--init-map prefix:{spec}: write each rename as OLD=NEW (NEW may be empty)")
        old, new = part.split("=", 1)
        pairs.append((old, new))

    def fn(sd, model):
        sd = strip_wrappers(sd, model)
        for old, new in pairs:
            sd = _rename_prefix(sd, old, new)
        return sd

    return fn


def get_key_mapping(spec: str | KeyMap | None) -> KeyMap:
    """Resolve a mapping given as a callable, a registered name, ``prefix:OLD=NEW`` or ``module:function``."""
    if spec is None or spec == "":
        return strip_wrappers
    if callable(spec):
        user = spec

        def chained(sd, model):
            return user(strip_wrappers(sd, model), model)

        return chained
    spec = str(spec)
    if spec in _KEY_MAPPINGS:
        return _KEY_MAPPINGS[spec][0]
    if spec.startswith("prefix:"):
        return _prefix_mapping(spec[len("prefix:"):])
    if ":" in spec:
        target, func_name = spec.rsplit(":", 1)
        try:
            if target.endswith(".py"):
                file = Path(target)
                if not file.is_file():
                    raise ConfigError(f"--init-map {spec}: {file} does not exist")
                module_spec = importlib.util.spec_from_file_location(f"musetag_user_map_{file.stem}", file)
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)  # type: ignore[union-attr]
            else:
                module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"--init-map {spec}: cannot import {target} ({exc})") from None
        fn = getattr(module, func_name, None)
        if not callable(fn):
            raise ConfigError(f"--init-map {spec}: {target} has no function {func_name!r}")
        return get_key_mapping(fn)
    raise ConfigError(
        f"unknown key mapping {spec!r}: use one of {', '.join(_KEY_MAPPINGS)}, prefix:OLD=NEW, "
        "or module:function / file.py:function"
    )


# ------------------------------------------------------------------------------ upstream formats
# Published weights of other projects, renamed key for key onto the zoo's exact re-implementations
# (see musetag.models.upstream). Strict: every key must be known and, with a target model, every
# target key present with the same shape; anything else is a ModelError naming the keys.

UPSTREAM_FORMATS = ("mtg-baseline", "won2020")
_BASELINE_BLOCK = {1: 0, 2: 2, 3: 4, 4: 6, 5: 8}  # conv_i -> vggish_baseline features.<index>


def _rename_mtg_baseline(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head == "bn_init":
        return f"input_bn.{rest}"
    if head == "dense":
        return f"classifier.{rest}"
    for prefix, sub in (("conv_", 0), ("bn_", 1)):
        if head.startswith(prefix) and head[len(prefix):].isdigit() and int(head[len(prefix):]) in _BASELINE_BLOCK:
            return f"features.{_BASELINE_BLOCK[int(head[len(prefix):])]}.{sub}.{rest}"
    return None


_WON_TOP = ("spec", "spec_bn", "layer1", "layer2", "layer3", "layer4", "layer5", "layers", "dense1", "bn")


def _rename_won2020(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head in ("dense", "dense2"):
        return f"classifier.{rest}"
    return key if head in _WON_TOP else None


_UPSTREAM_RENAMES = {"mtg-baseline": _rename_mtg_baseline, "won2020": _rename_won2020}


def upstream_model_spec(kind: str, state_dict: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """``(zoo model name, args)`` of the exact architecture behind an upstream state dict, read
    from its keys and shapes (``n_classes`` from the output layer; Musicnn's back-end and dense widths)."""
    if kind not in _UPSTREAM_RENAMES:
        raise ModelError(f"unknown upstream format {kind!r}; known: {', '.join(UPSTREAM_FORMATS)}")
    sd = dict(state_dict)
    if kind == "mtg-baseline":
        if "dense.weight" not in sd:
            raise ModelError("not an MTG-Jamendo baseline state dict: no 'dense.weight'")
        return "vggish_baseline", {"n_classes": int(sd["dense.weight"].shape[0]), "act": "elu"}
    if "layers.0.conv.weight" in sd:
        if "dense2.weight" not in sd or "layer1.conv.weight" not in sd or "dense1.weight" not in sd:
            raise ModelError("Musicnn state dict without dense2/layer1/dense1 weights; the file is incomplete")
        return "won_musicnn", {"n_classes": int(sd["dense2.weight"].shape[0]),
                               "backend": int(sd["layer1.conv.weight"].shape[0]),
                               "dense": int(sd["dense1.weight"].shape[0])}
    if "dense.weight" not in sd:
        raise ModelError("not a Won et al. 2020 fcn/crnn/musicnn state dict: no 'dense.weight' or 'dense2.weight'")
    name = "won_crnn" if "layer5.weight_ih_l0" in sd else "won_fcn"
    return name, {"n_classes": int(sd["dense.weight"].shape[0])}


def _check_strict(kind: str, mapped: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                  head: str | None = None) -> None:
    from musetag.models.pretrained import state_dict_mismatch

    mismatch = state_dict_mismatch(dict(mapped), dict(target), skip_shapes_under=head, show=50)
    if mismatch:
        raise ModelError(f"{kind} weights do not fit the model exactly: {mismatch}")


def convert_upstream(kind: str, state_dict: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Upstream ``state_dict`` (``kind``: ``mtg-baseline`` or ``won2020``) renamed to musetag's keys.

    Strict: a key no rule knows, a missing key or a different shape raises :class:`ModelError`
    naming them. Without ``model`` the check is against the architecture
    :func:`upstream_model_spec` reads from the keys, so a downloaded file can be converted into
    a package without building anything first. With ``model`` (``--init-from FILE --init-map
    won2020``) the output layer may differ in size: transfer re-creates it for the new tags."""
    if kind not in _UPSTREAM_RENAMES:
        raise ModelError(f"unknown upstream format {kind!r}; known: {', '.join(UPSTREAM_FORMATS)}")
    rename = _UPSTREAM_RENAMES[kind]
    sd = strip_wrappers(_tensors_only(state_dict), None)
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        new = rename(key)
        if new is None:
            unknown.append(key)
        else:
            mapped[new] = value
    if unknown:
        raise ModelError(f"{kind} weights: unexpected key(s) {', '.join(unknown)}; is this the right format?")
    head = None
    if model is None:
        from musetag.models import create_model

        name, args = upstream_model_spec(kind, sd)
        model = create_model(name, **args)
    else:
        head = classifier_prefix(model)
    _check_strict(kind, mapped, model.state_dict(), head)
    return mapped


@register_key_mapping("mtg-baseline")
def mtg_baseline(sd, model):
    """MTG-Jamendo baseline (MTG/mtg-jamendo-dataset scripts/baseline CNN) onto vggish_baseline(act="elu"); strict."""
    return convert_upstream("mtg-baseline", sd, model)


@register_key_mapping("won2020")
def won2020(sd, model):
    """Won et al. 2020 sota-music-tagging-models fcn/musicnn/crnn onto won_fcn/won_musicnn/won_crnn; strict."""
    return convert_upstream("won2020", sd, model)


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


def _tensors_only(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        tensors = _tensors_only(obj)
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors
        for key in ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params", "ema"):
            if key in obj and isinstance(obj[key], (Mapping, nn.Module)):
                found = _find_state_dict(obj[key], path)
                if found:
                    return found
    raise ModelError(
        f"{path}: found no weights in this file (expected a state_dict, or a dict holding one under "
        "'state_dict', 'model_state_dict' or 'model'); pass a musetag run folder, package, checkpoint or "
        "a .safetensors/.pt file of tensors"
    )


def load_source(source: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module) -> SourceWeights:
    """Read the weights to transfer from a run folder, checkpoint, package, raw weights file,
    an in-memory ``state_dict`` or a model."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "musetag_config", None) or None
        return SourceWeights(dict(source.state_dict()), type(source).__name__, "model", model=cfg)
    if isinstance(source, Mapping):
        return SourceWeights(_tensors_only(source), "state_dict", "weights")
    from musetag.models.hub import resolve
    from musetag.tag import package as pkg

    path = resolve(source)
    if not path.exists():
        raise ModelError(
            f"--init-from {path}: no such file or folder; give a run folder of `musetag train`, a checkpoint "
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
        ckpt_path = pkg.find_checkpoint(path, "auto")
        src = _load_checkpoint_file(ckpt_path)
        src.kind, src.origin = "run", f"{path} ({ckpt_path.name})"
        return src
    if path.suffix.lower() not in RAW_SUFFIXES:
        raise ModelError(
            f"--init-from {path}: unknown weights format {path.suffix or '(no extension)'}; expected a run folder, "
            f"a model package, or one of {', '.join(RAW_SUFFIXES)}"
        )
    return _load_checkpoint_file(path)


def _load_checkpoint_file(path: Path) -> SourceWeights:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return SourceWeights(load_file(str(path)), str(path), "weights")
        except Exception as exc:  # noqa: BLE001 - name the file
            raise ModelError(f"{path}: cannot read safetensors weights ({exc}); the file is damaged") from None
    from musetag.models.safe_load import load_torch_file

    obj = load_torch_file(path, what="--init-from weights")
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj.get("model"), Mapping) \
            and "name" in obj["model"]:
        return SourceWeights(
            _tensors_only(obj["state_dict"]), str(path), "checkpoint", model=dict(obj["model"]),
            tags=list(obj.get("tags") or []) or None, features=obj.get("features"), task=obj.get("task"),
        )
    return SourceWeights(_find_state_dict(obj, path), str(path), "weights")


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
            items = [i if isinstance(i, str) else f"{i[0]} {tuple(i[1])}->{tuple(i[2])}" for i in items]
            more = f", ... (+{len(items) - max_items})" if len(items) > max_items else ""
            return ", ".join(items[:max_items]) + more

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
        if self.skipped_shape:
            lines.append(f"  skipped, shape differs: {few(self.skipped_shape)}")
        if self.unused:
            lines.append(f"  source weights with no counterpart: {few(self.unused)}")
        if self.not_initialised:
            lines.append(f"  left at random initialisation: {few(self.not_initialised)}")
        if self.frozen_stages:
            lines.append(f"  frozen stages: {', '.join(self.frozen_stages)}")
        return "\n".join(lines)


def classifier_prefix(model: nn.Module) -> str | None:
    """The state_dict prefix of the model's classifier (``"classifier."``), or None."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "classifier", None)
    if head is None:
        return None
    for name, module in model.named_modules():
        if module is head and name:
            return name + "."
    return None


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
) -> TransferReport:
    """Load into ``model`` every source weight whose (mapped) name and shape match.

    ``tags``: the target's tag list; with ``source_tags`` (read from the source when it is a
    musetag run/checkpoint/package) the classifier rows of shared tags are copied. The classifier
    is otherwise left freshly initialised, unless ``keep_classifier=True`` (same tags, same order).
    Raises :class:`ModelError` when nothing matches (wrong architecture or mapping), or when less than
    ``min_fraction`` of the parameters could be loaded.
    """
    src = source if isinstance(source, SourceWeights) else load_source(source)
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
            new_state[key] = _adapt_input_conv(tgt.shape[1], value).to(dtype=tgt.dtype)
            report.adapted.append(key)
        else:
            report.skipped_shape.append((key, list(value.shape), list(tgt.shape)))
    if not report.loaded and not report.adapted:
        examples_src = ", ".join(list(mapped)[:4])
        examples_tgt = ", ".join(list(target)[:4])
        raise ModelError(
            f"--init-from {src.origin}: no weight matches the model by name and shape (source keys like "
            f"{examples_src}; model keys like {examples_tgt}). Use the same architecture, or a key mapping "
            f"(--init-map {', '.join(_KEY_MAPPINGS)}, prefix:OLD=NEW, or module:function)"
        )
    model.load_state_dict(new_state, strict=False)
    params = dict(model.named_parameters())
    report.total_parameters = sum(p.numel() for p in params.values())
    report.loaded_parameters = sum(
        params[k].numel() for k in [*report.loaded, *report.adapted] if k in params
    )
    report.not_initialised = [k for k in target if k not in new_state and not k.endswith("num_batches_tracked")]
    if report.fraction_loaded < min_fraction:
        raise ModelError(
            f"--init-from {src.origin}: only {report.fraction_loaded:.1%} of the parameters matched "
            f"(minimum {min_fraction:.0%}); check the architecture or give a key mapping (--init-map)"
        )
    if report.fraction_loaded < 0.5:
        log.warning("only %.1f%% of the parameters were loaded from %s; is it the same architecture?",
                    100 * report.fraction_loaded, src.origin)
    return report


def _adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    from musetag._compat import import_timm

    import_timm()
    from timm.models import adapt_input_conv

    return adapt_input_conv(in_chans, weight.clone())


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


# ------------------------------------------------------------------------------------ freezing


def model_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's stages in input-to-output order, classifier excluded.

    A model may define ``freeze_groups()`` returning ``[(name, module), ...]``; otherwise the stages are its
    top-level children that hold parameters; a single wrapper child (``features``, a timm ``body``)
    is descended into and a container of blocks (``stages``, ``blocks``) counts each block, so a
    ResNet gives ``stem, stages.0 .. stages.3`` as in timm.
    """
    custom = getattr(model, "freeze_groups", None)
    if callable(custom) and not isinstance(custom, nn.Module):
        return list(custom())
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "classifier", None)
    prefix, module = "", model
    while True:
        children = [
            (name, child) for name, child in module.named_children()
            if child is not head and any(True for _ in child.parameters())
        ]
        if len(children) == 1 and any(True for _ in children[0][1].children()):
            prefix += children[0][0] + "."
            module = children[0][1]
            continue
        stages: list[tuple[str, nn.Module]] = []
        for name, child in children:
            inner = [(n, c) for n, c in child.named_children() if any(True for _ in c.parameters())]
            if not isinstance(child, nn.Sequential | nn.ModuleList) or len(inner) < 2:
                stages.append((prefix + name, child))
            elif any(any(True for _ in c.children()) for _, c in inner):
                # a container of blocks (ResNet ``stages``, timm ``blocks``): each block is a stage
                stages.extend((f"{prefix}{name}.{n}", c) for n, c in inner)
            else:
                # a flat run of layers (VGG ``features``): each weight layer with the norms after it
                groups: list[tuple[str, list[nn.Module]]] = []
                for n, c in inner:
                    if groups and isinstance(c, _NORMS):
                        groups[-1][1].append(c)
                    else:
                        groups.append((n, [c]))
                if len(groups) < 2:
                    stages.append((prefix + name, child))
                else:
                    stages.extend((f"{prefix}{name}.{n}", nn.ModuleList(ms)) for n, ms in groups)
        return stages


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class StageFreezer:
    """Freeze the first ``n_stages`` stages for the first ``epochs`` epochs (None: always).

    Frozen parameters get ``requires_grad = False`` (no gradient is computed, optimisers skip them)
    and frozen batch-norm layers run in eval mode even while the model trains (a forward pre-hook),
    so their running statistics keep the pretrained values. Call :meth:`apply` with the 0-based
    epoch at the start of every epoch (before or after ``model.train()``).
    """

    def __init__(self, model: nn.Module, n_stages: int, epochs: int | None = None) -> None:
        stages = model_stages(model)
        if n_stages < 0:
            raise ConfigError(f"freeze_stages={n_stages}: give a number of stages >= 0")
        if n_stages > len(stages):
            raise ConfigError(
                f"freeze_stages={n_stages}, but the model has {len(stages)} stages "
                f"({', '.join(n for n, _ in stages)}); freeze at most {len(stages)}"
            )
        if epochs is not None and epochs < 0:
            raise ConfigError(f"freeze_epochs={epochs}: give a number of epochs >= 0 (omit it to freeze throughout)")
        self.model = model
        self.epochs = epochs
        self.stage_names = [n for n, _ in stages[:n_stages]]
        self._modules = [m for _, m in stages[:n_stages]]
        self._params = [p for m in self._modules for p in m.parameters()]
        self._trainable = [p.requires_grad for p in self._params]
        self._norms = [
            sub for m in self._modules for sub in m.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)
        ]
        self._hooks: list[Any] = []
        self.frozen = False

    def is_frozen_at(self, epoch: int) -> bool:
        return bool(self._modules) and (self.epochs is None or epoch < self.epochs)

    def apply(self, epoch: int) -> bool:
        """Freeze or unfreeze for ``epoch`` (0-based); returns whether the stages are frozen."""
        frozen = self.is_frozen_at(epoch)
        if frozen == self.frozen:
            return frozen
        for p, trainable in zip(self._params, self._trainable):
            p.requires_grad_(trainable and not frozen)
            if frozen:
                p.grad = None
        if frozen:
            self._hooks = [m.register_forward_pre_hook(_eval_mode) for m in self._norms]
        else:
            for h in self._hooks:
                h.remove()
            self._hooks = []
        log.info("%s stages %s (epoch %d)", "froze" if frozen else "unfroze", ", ".join(self.stage_names), epoch + 1)
        self.frozen = frozen
        return frozen

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def _eval_mode(module: nn.Module, inputs: Any) -> None:
    module.training = False  # a frozen batch norm normalises with (and keeps) its running statistics
