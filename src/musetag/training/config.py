"""Typed training configuration and ``--set`` overrides (recipe files: :mod:`musetag.training.recipes`).

A run is described by one :class:`TrainConfig` made of small section dataclasses. A recipe (a TOML
file, or the name of one shipped in ``musetag/recipes``) only overrides what differs from the
defaults; ``--set section.key=value`` overrides a recipe. Every key is checked against the
dataclasses before any work starts, and a bad key or value raises :class:`ConfigError` naming the
key, what was found and the valid choices. The resolved configuration is written to
``RUN_DIR/config.toml`` by :func:`musetag.training.recipes.dump_toml` and reloads to the same object.

Sections (TOML tables): ``model``, ``features``, ``data``, ``loss``, ``optim``, ``schedule``,
``augment``, ``swa``, ``snapshots``, ``coteaching``, ``early_stopping``, ``init``, plus top-level keys
(``seed``, ``epochs``, ``final``...) and an optional ``[[members]]`` list for multi-model
ensembles (each member: ``name``, ``weight``, ``set`` = a table of overrides).

``final`` names the preferred final model; ``final_choice = "validation"`` (default) ships whichever
candidate scores best on validation (ties keep ``final``), ``"pinned"`` ships ``final`` regardless.
``validate_every = k`` validates after every k-th epoch and the last (early stopping's and the
plateau schedule's patience then count validations; the best epoch is the best validated one). ``decision`` sets a multilabel
run's thresholds (:mod:`musetag.training.decisions`). ``--set epochs=N`` scales the recipe's other
epoch counts (:mod:`musetag.training.run_length`).

One file on purpose (about 600 lines): the sections, their checks and the `--set` parsing are one
schema that must change together; splitting it would put one key's type, default and check in
different files. Finding, reading and writing recipe files is :mod:`musetag.training.recipes`.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from musetag.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# sections


@dataclass
class ModelSection:
    """The network: a registry name (``musetag.models.list_models()``) and its keyword arguments."""

    name: str = "simplecnn"
    args: dict = field(default_factory=dict)


@dataclass
class DataSection:
    """Where the data comes from and how tracks become batches.

    ``crop`` is the training excerpt length in frames (spectrogram models) or samples (waveform
    models); 0 uses whole tracks (padded to the longest in the batch). Evaluation cuts each track
    into segments of ``eval_crop`` (0: same as ``crop``) every ``eval_hop`` (0: no overlap), keeps
    at most ``eval_max_segments`` evenly spaced ones (0: all) and aggregates the per-segment
    outputs with ``aggregation``. The windows of each track are cut once per run and kept in
    memory up to ``eval_cache_mb`` megabytes (0: cut again at every evaluation).
    ``min_epoch_samples`` > the training split's size makes an epoch several passes over it (each a new
    order and new random crops), so a tiny dataset still gets that many examples, and optimiser steps,
    per epoch; epoch-counted settings (freezing, patience, schedules, SWA) then keep their meaning.
    """

    dataset: str = ""
    cache_dir: str = ""
    crop: int = 128
    eval_crop: int = 0
    eval_hop: int = 0
    eval_max_segments: int = 0
    aggregation: str = "mean"
    batch_size: int = 32
    eval_batch_size: int = 64
    eval_cache_mb: float = 1024.0
    min_epoch_samples: int = 0
    num_workers: int = 0
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    label_mode: str = "multi"
    normalize: bool = True
    drop_last: bool = False


@dataclass
class LossSection:
    """``auto`` = ``bce`` for multilabel tasks, ``ce`` for multiclass ones."""

    name: str = "auto"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0


@dataclass
class OptimSection:
    """Optimiser. ``switch_to_sgd_epoch`` > 0 replaces Adam by SGD (Nesterov) at that epoch (AMLAG)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    switch_to_sgd_epoch: int = 0
    switch_lr: float = 0.0
    grad_clip: float = 0.0
    grad_clip_mode: str = "norm"


@dataclass
class ScheduleSection:
    """Learning-rate schedule, stepped once per epoch (warm-up is per step).

    ``cosine``: cosine decay over ``t_max`` epochs (0: all epochs) to ``min_lr``;
    ``plateau``: multiply by ``factor`` after ``patience`` epochs without a lower validation loss;
    ``step``: multiply by ``factor`` every ``step_size`` epochs; ``cosine_restarts``: ``cycles``
    equal cosine cycles (snapshot ensembles); ``constant``.
    """

    name: str = "constant"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    t_max: int = 0
    factor: float = 0.1
    patience: int = 5
    step_size: int = 30
    cycles: int = 1


@dataclass
class AugmentSection:
    """Training-only augmentation (``musetag.features.augment``)."""

    mixup_alpha: float = 0.0
    mixup_prob: float = 1.0
    specaugment: bool = False
    time_masks: int = 2
    freq_masks: int = 2
    max_time_fraction: float = 0.1
    max_freq_fraction: float = 0.1
    specaugment_prob: float = 1.0
    random_scale: list = field(default_factory=lambda: [1.0, 1.0])
    noise_std: float = 0.0
    gain_db: float = 0.0


@dataclass
class SWASection:
    """Stochastic weight averaging over the last ``length`` fraction of epochs; ``lr`` > 0 switches
    to ``SWALR`` (constant SWA learning rate after ``anneal_epochs``), 0 keeps the schedule."""

    enabled: bool = False
    length: float = 0.2
    lr: float = 0.0
    anneal_epochs: int = 5


@dataclass
class SnapshotSection:
    """Snapshot ensemble: the model is saved at the end of each of ``count`` equal cycles (with a
    ``cosine_restarts`` schedule: the end of each cosine cycle) and the snapshots' predictions
    are averaged."""

    count: int = 0


@dataclass
class CoTeachingSection:
    """Co-teaching (Han et al. 2018; SELAB-HCMUS 2021): a peer network trains alongside the
    model; each keeps the ``1 - forget rate`` smallest-loss samples of a batch to update the other.
    The forget rate ramps linearly (``exponent``) from 0 to ``forget_rate`` over ``num_gradual``
    epochs. ``weights`` mixes the two networks' predictions (model, peer) for the final outputs.
    ``peer_init`` (``--init-peer-from``) starts the peer from other weights, as ``init.path`` does
    for the model (SELAB: both networks ImageNet-pretrained), with the key mapping ``peer_init_map``;
    RUN_DIR/transfer-peer.json lists what was loaded."""

    enabled: bool = False
    peer: str = ""
    peer_args: dict = field(default_factory=dict)
    peer_init: str = ""
    peer_init_map: str = ""
    forget_rate: float = 0.05
    num_gradual: int = 10
    exponent: float = 1.0
    weights: list = field(default_factory=lambda: [1.0, 0.0])


@dataclass
class EarlyStoppingSection:
    """``patience`` > 0 stops after that many epochs without a better validation metric.
    ``per_class`` (AMLAG 2019) takes each tag's output from its own best epoch by validation loss."""

    patience: int = 0
    per_class: bool = False


@dataclass
class InitSection:
    """Transfer learning (:mod:`musetag.training.transfer`): start from the weights in ``path`` (a run folder,
    checkpoint, model package or local ``.safetensors``/``.pt`` file; never downloaded). Weights are
    matched by name and shape after the key mapping ``map`` (a registered name such as ``timm``,
    ``prefix:OLD=NEW`` or ``module:function``); the classifier is re-created for this dataset's tags.
    ``freeze_stages`` > 0 freezes the first stages for ``freeze_epochs`` epochs (0: the whole run)
    of every network started from weights: the model (``path``) and the co-teaching peer
    (``coteaching.peer_init``); the first ``keep_frozen`` of those stay frozen after that (a front
    end that is never trained). What was loaded, skipped and frozen is written to
    ``RUN_DIR/transfer.json`` (``transfer-peer.json`` for the peer)."""

    path: str = ""
    map: str = ""
    freeze_stages: int = 0
    freeze_epochs: int = 0
    keep_frozen: int = 0
    body_lr_scale: float = 1.0  # everything but the classifier at lr x this (musetag.training.param_groups)


@dataclass
class ProbeSection:
    """Probes on track embeddings (``model.name = "probe_*"``, :mod:`musetag.training.probe`): the
    inverse L2 strengths ``C`` tried (scikit-learn's convention), the one best on validation kept."""

    grid: list = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0, 100.0])
    max_iter: int = 500


@dataclass
class SelectSection:
    """``musetag train probe-auto`` (:mod:`musetag.training.probe_auto`): the backbones tried (empty: every
    catalogue backbone), the heads, the folds of the grouped cross-validation on train+validation, how
    many of the best single backbones are paired, the C grids (extended past an edge that wins, ``extend``
    values at most) and the MLP's width. ``packable``: pair only backbones that hear audio alike, so that the
    winner always makes one package. ``finetune``:
    also cross-validate ``finetune_recipe`` (with ``finetune_sets``) on the same folds and train it
    instead when its CV score is higher (off by default: about folds + 1 fine-tunes)."""

    backbones: list = field(default_factory=list)
    # the layers of every backbone written without options: "" the dataset default (embed:NAME, the mean of the last
    # three taps); "all" every tap with mean, std and max (a larger search: bench/results/probe-auto-layers.md)
    layers: str = ""
    heads: list = field(default_factory=lambda: ["linear", "mlp"])
    folds: int = 5
    pair_top: int = 3
    grid: list = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    mlp_grid: list = field(default_factory=lambda: [1.0, 10.0])
    extend: int = 2  # a grid whose best C is its edge is extended past it, at most this many values
    hidden: int = 128
    max_iter: int = 150
    average: list = field(default_factory=lambda: [1, 2, 3, 5, 8])
    packable: bool = True
    bootstrap: int = 1000
    # fine-tuning as one more candidate, on the same folds (musetag.training.finetune_candidate): CPU hours
    finetune: bool = False
    finetune_recipe: str = "smalldata-finetune-musicnn"
    finetune_sets: list = field(default_factory=list)  # its --set overrides, e.g. ["epochs=4"]


@dataclass
class MemberSpec:
    """One member of a multi-model ensemble: a shipped recipe (or, without one, the enclosing
    config) with ``set`` overrides; its outputs are weighted by ``weight``."""

    name: str = ""
    recipe: str = ""
    weight: float = 1.0
    set: dict = field(default_factory=dict)


FINAL_CHOICES = ("auto", "best", "last", "swa", "snapshots", "per_class")
#: ``final_choice``: pick the final model among the run's candidates on validation, or keep ``final``
FINAL_CHOICE_RULES = ("validation", "pinned")
#: ``decision``: how a multilabel run's per-tag thresholds are set (musetag.training.decisions)
DECISION_RULES = ("auto", "max_f1", "prior_rate")


@dataclass
class TrainConfig:
    """Everything a training run needs. See the module docstring for the sections."""

    recipe: str = ""
    description: str = ""
    seed: int = 0
    epochs: int = 10
    device: str = "auto"
    amp: str = "off"
    compile: bool = False
    final: str = "auto"
    final_choice: str = "validation"
    validate_every: int = 1
    decision: str = "auto"
    out: str = ""
    checkpoint_every_steps: int = 0
    progress: bool = True
    max_steps_per_epoch: int = 0
    sync_batchnorm: bool = True
    model: ModelSection = field(default_factory=ModelSection)
    features: dict = field(default_factory=dict)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    swa: SWASection = field(default_factory=SWASection)
    snapshots: SnapshotSection = field(default_factory=SnapshotSection)
    coteaching: CoTeachingSection = field(default_factory=CoTeachingSection)
    early_stopping: EarlyStoppingSection = field(default_factory=EarlyStoppingSection)
    init: InitSection = field(default_factory=InitSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    select: SelectSection = field(default_factory=SelectSection)
    members: list = field(default_factory=list)
    member_sets: list = field(default_factory=list)

    def __post_init__(self) -> None:
        validate(self)

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "TrainConfig":
        return _build(cls, data, prefix="", source=source)

    def replace(self, overrides: dict | None = None, sets: list[str] | None = None) -> "TrainConfig":
        """A new config with a nested dict of ``overrides`` and ``key=value`` strings applied."""
        data = self.to_dict()
        if overrides:
            data = merge(data, overrides)
        for item in check_sets(sets):
            key, value = parse_set(item)
            data = _apply_set(data, key, value)
        return TrainConfig.from_dict(data, source="--set")


CHOICES: dict[str, tuple] = {
    "device": ("auto", "cpu", "cuda", "mps", "cuda:N"),
    "amp": ("off", "bf16", "fp16", "auto"),
    "final": FINAL_CHOICES,
    "final_choice": FINAL_CHOICE_RULES,
    "decision": DECISION_RULES,
    "data.aggregation": ("mean", "max"),
    "data.label_mode": ("multi", "single"),
    "loss.name": ("auto", "bce", "wbce", "focal", "ce", "mse", "ccc"),
    "optim.name": ("sgd", "adam", "adamw", "amsgrad"),
    "optim.grad_clip_mode": ("norm", "value"),
    "schedule.name": ("constant", "cosine", "plateau", "step", "cosine_restarts"),
}


# ---------------------------------------------------------------------------------------------
# validation


def _check_choice(key: str, value: Any) -> None:
    choices = CHOICES[key]
    if key == "device":
        if value in choices or (isinstance(value, str) and value.startswith("cuda:")):
            return
    elif value in choices:
        return
    raise ConfigError(f"{key} = {value!r} is not valid; choose one of: {', '.join(choices)}")


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"  # (finite: optim.lr = 1e400 is inf, and trained to nan)
        raise ConfigError(f"{key} = {value!r} is not valid; expected a number {expected}")


def validate(cfg: TrainConfig) -> None:
    """Check values that types alone do not catch. Raises ConfigError naming the key."""
    for key in CHOICES:
        section, _, name = key.rpartition(".")
        obj = getattr(cfg, section) if section else cfg
        _check_choice(key, getattr(obj, name))
    _positive("epochs", cfg.epochs)
    _positive("max_steps_per_epoch", cfg.max_steps_per_epoch, allow_zero=True)  # 0: every batch
    _positive("checkpoint_every_steps", cfg.checkpoint_every_steps, allow_zero=True)  # 0: at epoch ends
    _positive("validate_every", cfg.validate_every)
    _positive("data.eval_cache_mb", cfg.data.eval_cache_mb, allow_zero=True)
    _positive("data.crop", cfg.data.crop, allow_zero=True)
    _positive("data.eval_crop", cfg.data.eval_crop, allow_zero=True)
    _positive("data.eval_hop", cfg.data.eval_hop, allow_zero=True)
    _positive("data.eval_max_segments", cfg.data.eval_max_segments, allow_zero=True)
    _positive("data.batch_size", cfg.data.batch_size)
    _positive("data.eval_batch_size", cfg.data.eval_batch_size)
    _positive("data.num_workers", cfg.data.num_workers, allow_zero=True)
    _positive("data.min_epoch_samples", cfg.data.min_epoch_samples, allow_zero=True)
    _positive("optim.lr", cfg.optim.lr)
    _positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    _positive("optim.grad_clip", cfg.optim.grad_clip, allow_zero=True)
    _positive("optim.switch_to_sgd_epoch", cfg.optim.switch_to_sgd_epoch, allow_zero=True)
    _positive("optim.switch_lr", cfg.optim.switch_lr, allow_zero=True)
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas = {cfg.optim.betas!r} is not valid; expected two numbers in [0, 1)")
    if not 0 <= cfg.optim.momentum < 1:
        raise ConfigError(f"optim.momentum = {cfg.optim.momentum!r} is not valid; expected a number in [0, 1)")
    _positive("schedule.warmup_epochs", cfg.schedule.warmup_epochs, allow_zero=True)
    _positive("schedule.min_lr", cfg.schedule.min_lr, allow_zero=True)
    _positive("schedule.factor", cfg.schedule.factor)
    _positive("schedule.cycles", cfg.schedule.cycles)
    _positive("schedule.step_size", cfg.schedule.step_size)
    a = cfg.augment
    _positive("augment.mixup_alpha", a.mixup_alpha, allow_zero=True)
    _positive("augment.noise_std", a.noise_std, allow_zero=True)
    _positive("augment.gain_db", a.gain_db, allow_zero=True)
    for key in ("mixup_prob", "specaugment_prob", "max_time_fraction", "max_freq_fraction"):
        value = getattr(a, key)
        if not 0 <= value <= 1:
            raise ConfigError(f"augment.{key} = {value!r} is not valid; expected a number in [0, 1]")
    if len(a.random_scale) != 2 or not 0 < a.random_scale[0] <= a.random_scale[1]:
        raise ConfigError(
            f"augment.random_scale = {a.random_scale!r} is not valid; expected [low, high] with 0 < low <= high"
        )
    if not 0 < cfg.swa.length <= 1:
        raise ConfigError(f"swa.length = {cfg.swa.length!r} is not valid; expected a fraction of the epochs in (0, 1]")
    _positive("snapshots.count", cfg.snapshots.count, allow_zero=True)
    ct = cfg.coteaching
    if not 0 <= ct.forget_rate < 1:
        raise ConfigError(f"coteaching.forget_rate = {ct.forget_rate!r} is not valid; expected a number in [0, 1)")
    if ct.enabled and not ct.peer:
        raise ConfigError("coteaching.enabled = true needs coteaching.peer (a model name, e.g. 'rexnet_100')")
    if ct.peer_init and not ct.enabled:
        raise ConfigError("coteaching.peer_init (--init-peer-from) needs coteaching.enabled = true and a peer model")
    if len(ct.weights) != 2 or any(w < 0 for w in ct.weights) or sum(ct.weights) <= 0:
        raise ConfigError(f"coteaching.weights = {ct.weights!r} is not valid; expected [model, peer] weights >= 0")
    _positive("early_stopping.patience", cfg.early_stopping.patience, allow_zero=True)
    _positive("init.freeze_stages", cfg.init.freeze_stages, allow_zero=True)
    _positive("init.freeze_epochs", cfg.init.freeze_epochs, allow_zero=True)
    _positive("init.keep_frozen", cfg.init.keep_frozen, allow_zero=True)
    if cfg.init.keep_frozen > cfg.init.freeze_stages:
        raise ConfigError(f"init.keep_frozen = {cfg.init.keep_frozen} is more than init.freeze_stages = "
                          f"{cfg.init.freeze_stages}: the stages kept frozen are the first of the frozen ones; "
                          f"raise freeze_stages to at least {cfg.init.keep_frozen}")
    _positive("init.body_lr_scale", cfg.init.body_lr_scale)
    if cfg.init.freeze_stages and not cfg.init.path and not ct.peer_init:
        raise ConfigError("init.freeze_stages needs init.path (--init-from) or coteaching.peer_init (--init-peer-from): "
                          "freezing random weights teaches nothing")
    if cfg.final == "swa" and not cfg.swa.enabled:
        raise ConfigError("final = 'swa' needs swa.enabled = true")
    if cfg.final == "snapshots" and cfg.snapshots.count < 1:
        raise ConfigError("final = 'snapshots' needs snapshots.count >= 1")
    if cfg.final == "per_class" and not cfg.early_stopping.per_class:
        raise ConfigError("final = 'per_class' needs early_stopping.per_class = true")
    if cfg.snapshots.count > cfg.epochs:
        raise ConfigError(f"snapshots.count = {cfg.snapshots.count} is larger than epochs = {cfg.epochs} (a snapshot "
                          f"is taken at most once an epoch); set snapshots.count = {cfg.epochs} or fewer (--set "
                          f"snapshots.count={cfg.epochs}), or epochs >= {cfg.snapshots.count}")
    _check_features(cfg.features)
    members = []
    for i, member in enumerate(cfg.members):
        if isinstance(member, MemberSpec):
            members.append(member)
            continue
        if not isinstance(member, dict):
            raise ConfigError(f"members[{i}] must be a table with name, weight and set")
        members.append(_build(MemberSpec, member, prefix=f"members[{i}].", source="config"))
    for i, member in enumerate(members):
        if not member.name:
            raise ConfigError(f"members[{i}].name is empty; give each ensemble member a folder name")
        _positive(f"members[{i}].weight", member.weight)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"members have duplicate names: {names}")
    cfg.members = members


def _check_features(features: dict) -> None:
    """``[features]``: ``preset`` (a musetag preset) and FeatureConfig field names."""
    if not features:
        return
    try:
        from musetag.features.presets import FeatureConfig, list_presets
    except ImportError:  # pragma: no cover - features package missing
        return
    known = {f.name for f in dataclasses.fields(FeatureConfig)} - {"mean", "std"}
    unknown = sorted(set(features) - known - {"preset"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean 'features.{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown key 'features.{unknown[0]}'{hint}; valid keys: features.preset, "
                          + ", ".join(f"features.{k}" for k in sorted(known)))
    preset = features.get("preset")
    if preset is not None and preset not in list_presets():
        raise ConfigError(f"features.preset = {preset!r} is not valid; choose one of: {', '.join(list_presets())}")


def resolved_final(cfg: TrainConfig) -> str:
    """The model whose outputs are the run's result when ``final = 'auto'``."""
    if cfg.final != "auto":
        return cfg.final
    if cfg.swa.enabled:
        return "swa"
    if cfg.snapshots.count:
        return "snapshots"
    if cfg.early_stopping.per_class:
        return "per_class"
    return "best"


# ---------------------------------------------------------------------------------------------
# building dataclasses from plain data, with errors that name the key


_FREE_DICTS = {"model.args", "coteaching.peer_args", "features", "set"}


def _coerce(key: str, tp: Any, value: Any, source: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected a string")
        return value
    if tp is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected a list")
        return list(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} = {value!r} is not valid; expected a table")
        return dict(value)
    return value


def _build(cls: type, data: Any, *, prefix: str, source: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a table, found {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            full = prefix + key
            # a setting of a section given without its section (eval_crop for data.eval_crop) is
            # the likelier mistake: name the section before a merely similar key of this level
            nested = [f"{prefix}{n}.{key}" for n in names
                      if dataclasses.is_dataclass(hints[n]) and key in {f.name for f in dataclasses.fields(hints[n])}]
            close = difflib.get_close_matches(key, names, n=1)
            hint = (f" (did you mean {' or '.join(repr(n) for n in nested)}?)" if nested
                    else f" (did you mean {prefix + close[0]!r}?)" if close else "")
            valid = ", ".join(prefix + n for n in names)
            raise ConfigError(f"{source}: unknown key {full!r}{hint}; valid keys: {valid}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, prefix=f"{prefix}{key}.", source=source)
        else:
            kwargs[key] = _coerce(prefix + key, tp, value, source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if str(exc).startswith(source):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; tables merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _nest(key: str, value: Any) -> dict:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set: {key!r} is not a valid key; use section.name=value, e.g. optim.lr=0.01")
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


_ARGS_OF = {"model.name": ("model", "args"), "coteaching.peer": ("coteaching", "peer_args")}


def _apply_set(data: dict, key: str, value: Any) -> dict:
    """Merge one ``key=value``; choosing another architecture (``model.name``, ``coteaching.peer``)
    starts from that model's own arguments (later ``model.args.*`` settings still apply)."""
    if key in _ARGS_OF:
        section, args_key = _ARGS_OF[key]
        current = data.get(section, {}) if isinstance(data.get(section), dict) else {}
        if current.get(key.split(".")[1]) != value and current.get(args_key):
            data = merge(data, {section: {}})
            data[section] = {**data[section], args_key: {}}
    return merge(data, _nest(key, value))


def check_sets(sets) -> list[str]:
    """``sets`` as the list of ``"KEY=VALUE"`` strings it must be (Python callers: ``sets="epochs=1"`` was read one
    character at a time, ``sets={"epochs": 1}`` one key at a time)."""
    if sets is None:
        return []
    if isinstance(sets, (str, bytes, dict)) or not all(isinstance(item, str) for item in sets):
        example = ""
        if isinstance(sets, dict):
            example = " (here: [" + ", ".join(f"'{k}={v}'" for k, v in list(sets.items())[:3]) + "])"
        raise ConfigError(f"sets must be a list of 'KEY=VALUE' strings, e.g. sets=['epochs=3', 'optim.lr=0.01']"
                          f"{example}; got {type(sets).__name__} {sets!r:.80}")
    return list(sets)


def parse_set(item: str) -> tuple[str, Any]:
    """``"optim.lr=0.01"`` -> ``("optim.lr", 0.01)``. The value is read as a TOML value when it
    parses as one (numbers, booleans, ``[lists]``, quoted strings), otherwise as a bare string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=0.01")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value
