"""Freezing the first stages of a model for the first epochs of a fine-tune.

:func:`model_stages` names a model's stages (its top-level blocks, input to output, classifier
excluded); :class:`StageFreezer` freezes the first N of them for the first K epochs, batch-norm
layers included (they run in eval mode while frozen), the first ``keep_frozen`` of them for the whole
run. Used by :mod:`musetag.training.transfer`.
"""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from musetag.errors import ConfigError

log = logging.getLogger("musetag.training.transfer")

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
    """Freeze the first ``n_stages`` stages for the first ``epochs`` epochs (None: always); of those,
    the first ``keep_frozen`` stay frozen for the whole run (a frozen front end under a back end that
    is unfrozen after ``epochs``).

    Frozen parameters get ``requires_grad = False`` (no gradient is computed, optimisers skip them)
    and frozen batch-norm layers run in eval mode even while the model trains (a forward pre-hook),
    so their running statistics keep the pretrained values. Call :meth:`apply` with the 0-based
    epoch at the start of every epoch (before or after ``model.train()``).
    """

    def __init__(self, model: nn.Module, n_stages: int, epochs: int | None = None, keep_frozen: int = 0) -> None:
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
        if not 0 <= keep_frozen <= n_stages:
            raise ConfigError(f"keep_frozen={keep_frozen}: give at most freeze_stages ({n_stages}) stages that "
                              "stay frozen for the whole run")
        self.model = model
        self.epochs = epochs
        self.keep_frozen = int(keep_frozen)
        self.stage_names = [n for n, _ in stages[:n_stages]]
        self._groups = [g for g in (_FrozenGroup(stages[:keep_frozen], None),
                                    _FrozenGroup(stages[keep_frozen:n_stages], epochs)) if g.names]

    @property
    def frozen(self) -> bool:
        return any(g.frozen for g in self._groups)

    def is_frozen_at(self, epoch: int) -> bool:
        return any(g.is_frozen_at(epoch) for g in self._groups)

    def apply(self, epoch: int) -> bool:
        """Freeze or unfreeze for ``epoch`` (0-based); returns whether any stage is frozen."""
        for group in self._groups:
            group.apply(epoch)
        return self.frozen

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


class _FrozenGroup:
    """Consecutive stages frozen together until one epoch (None: always)."""

    def __init__(self, stages: list[tuple[str, nn.Module]], epochs: int | None) -> None:
        self.names = [n for n, _ in stages]
        self.epochs = epochs
        modules = [m for _, m in stages]
        self._params = [p for m in modules for p in m.parameters()]
        self._trainable = [p.requires_grad for p in self._params]
        self._norms = [sub for m in modules for sub in m.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)]
        self._hooks: list[Any] = []
        self.frozen = False

    def is_frozen_at(self, epoch: int) -> bool:
        return bool(self.names) and (self.epochs is None or epoch < self.epochs)

    def apply(self, epoch: int) -> None:
        frozen = self.is_frozen_at(epoch)
        if frozen == self.frozen:
            return
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
        until = "for the whole run" if self.epochs is None else f"until epoch {self.epochs}"
        log.info("%s stages %s (epoch %d)%s", "froze" if frozen else "unfroze", ", ".join(self.names), epoch + 1,
                 f" {until}" if frozen else "")
        self.frozen = frozen


def _eval_mode(module: nn.Module, inputs: Any) -> None:
    module.training = False  # a frozen batch norm normalises with (and keeps) its running statistics
