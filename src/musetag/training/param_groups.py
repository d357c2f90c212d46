"""Discriminative learning rates for fine-tuning: the pretrained body learns slower than the new classifier.

``init.body_lr_scale`` (default 1: one learning rate) puts every parameter except the classifier's
(``model.get_classifier()``, the layer re-created for the dataset's tags) in a group whose learning
rate is ``body_lr_scale`` times the schedule's (:meth:`musetag.training.schedules.LRSchedule.apply`
multiplies each group's ``lr_scale``). With ``init.freeze_stages`` / ``freeze_epochs`` this is the
usual small-data recipe: the classifier alone first, then the body at a low learning rate.
"""
from __future__ import annotations

from torch import nn

from musetag.errors import ConfigError


def param_groups(model: nn.Module, body_lr_scale: float = 1.0):
    """``model.parameters()`` when the scale is 1, else two optimiser groups (``lr_scale``: body, 1: classifier)."""
    if body_lr_scale == 1.0:
        return model.parameters()
    plain = getattr(model, "module", model)
    getter = getattr(plain, "get_classifier", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Module):
        raise ConfigError(f"init.body_lr_scale = {body_lr_scale}: model {type(plain).__name__} has no classifier "
                          "(get_classifier()) to tell from its body; remove init.body_lr_scale")
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": body, "lr_scale": float(body_lr_scale)},
            {"params": [p for p in model.parameters() if id(p) in head_ids], "lr_scale": 1.0}]
