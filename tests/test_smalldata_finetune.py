"""The small-data fine-tuning recipe's one new piece: the body learns at ``init.body_lr_scale`` x lr."""
from __future__ import annotations

import pytest
import torch

from musetag.errors import ConfigError
from musetag.models import create_model
from musetag.training.config import load_config
from musetag.training.param_groups import param_groups
from musetag.training.schedules import LRSchedule, build_optimizer


def _sgd_step(scale: float, lr: float = 0.05):
    torch.manual_seed(0)
    model = create_model("simplecnn", n_classes=3)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    cfg = load_config(None, sets=["optim.name=sgd", "optim.momentum=0", "optim.weight_decay=0", f"optim.lr={lr}",
                                  f"init.body_lr_scale={scale}"])
    opt = build_optimizer(param_groups(model, cfg.init.body_lr_scale), cfg.optim)
    LRSchedule(cfg.schedule, epochs=1, base_lr=cfg.optim.lr).apply(opt, 0)
    x = torch.randn(4, 1, 96, 64, generator=torch.Generator().manual_seed(1))
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    opt.step()
    return model, before, grads


def test_body_moves_at_the_scaled_learning_rate_and_the_classifier_at_the_full_one():
    lr, scale = 0.05, 0.1
    model, before, grads = _sgd_step(scale, lr)
    for name, p in model.named_parameters():
        factor = 1.0 if name.startswith("classifier.") else scale
        torch.testing.assert_close(p.detach(), before[name] - lr * factor * grads[name], rtol=1e-5, atol=1e-7)
    assert any(not n.startswith("classifier.") and grads[n].abs().sum() > 0 for n in grads)


def test_body_lr_scale_needs_a_classifier_and_a_positive_value():
    with pytest.raises(ConfigError, match="init.body_lr_scale"):
        load_config(None, sets=["init.body_lr_scale=0"])
    with pytest.raises(ConfigError, match="no classifier"):
        param_groups(torch.nn.Linear(3, 2), 0.5)
    assert load_config("smalldata-finetune").init.body_lr_scale == 0.1
