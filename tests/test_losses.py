"""Losses on logits, checked against their formulas and reference implementations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musetag.errors import ConfigError
from musetag.training.losses import (BCELoss, CrossEntropyLoss, FocalLoss, WeightedBCELoss, build_loss,
                                     tag_frequency)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g) * 2
    targets = (torch.rand(6, 4, generator=g) > 0.6).float()
    return logits, targets


def test_bce_matches_probability_form(batch):
    logits, targets = batch
    expected = F.binary_cross_entropy(torch.sigmoid(logits), targets)
    assert torch.allclose(BCELoss()(logits, targets), expected, atol=1e-6)
    assert BCELoss()(logits, targets, reduction="none").shape == (6, 4)
    assert BCELoss()(logits, targets, reduction="sample").shape == (6,)


def test_weighted_bce_is_bour_formula(batch):
    logits, targets = batch
    p = np.array([0.006, 0.05, 0.093, 0.5])
    x = torch.sigmoid(logits).double().numpy()
    y = targets.double().numpy()
    # Bour 2021, section 3: l = -1/c sum_i (2/(1+p_i) y_i log x_i + 2 p_i/(1+p_i) (1-y_i) log(1-x_i))
    per_row = -((2 / (1 + p)) * y * np.log(x) + (2 * p / (1 + p)) * (1 - y) * np.log(1 - x)).mean(axis=1)
    got = WeightedBCELoss(p)(logits, targets, reduction="sample").double().numpy()
    np.testing.assert_allclose(got, per_row, rtol=1e-5)
    assert float(WeightedBCELoss(p)(logits, targets)) == pytest.approx(per_row.mean(), rel=1e-5)


def test_weighted_bce_weights_rare_positives_more():
    loss = WeightedBCELoss([0.01, 0.5])
    assert loss.pos_weight[0] > loss.pos_weight[1]
    assert loss.neg_weight[0] < loss.neg_weight[1]
    # a tag present in every track weighs positives and negatives equally (1, 1)
    full = WeightedBCELoss([1.0])
    assert float(full.pos_weight[0]) == pytest.approx(1.0) and float(full.neg_weight[0]) == pytest.approx(1.0)


def test_focal_matches_torchvision_reference(batch):
    from musetag._compat import ensure_torchvision

    ensure_torchvision()
    from torchvision.ops import sigmoid_focal_loss

    logits, targets = batch
    ref = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="mean")
    assert torch.allclose(FocalLoss(0.25, 2.0)(logits, targets), ref, atol=1e-6)


def test_focal_gamma_zero_alpha_off_is_bce(batch):
    logits, targets = batch
    assert torch.allclose(FocalLoss(alpha=-1, gamma=0)(logits, targets), BCELoss()(logits, targets), atol=1e-6)


def test_cross_entropy_hard_and_soft_targets_agree():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 3.0]])
    hard = torch.tensor([0, 2])
    soft = F.one_hot(hard, 3).float()
    ce = CrossEntropyLoss()
    assert torch.allclose(ce(logits, hard), ce(logits, soft))
    assert torch.allclose(ce(logits, hard), F.cross_entropy(logits, hard))


def test_tag_frequency_and_build_loss_checks_task():
    targets = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=np.float32)
    assert tag_frequency(targets).tolist() == [0.75, 0.25]
    wbce = build_loss("wbce", task="multilabel", train_targets=targets)
    assert isinstance(wbce, WeightedBCELoss)
    assert isinstance(build_loss("auto", task="multiclass"), CrossEntropyLoss)
    with pytest.raises(ConfigError, match="multiclass"):
        build_loss("focal", task="multiclass")
    with pytest.raises(ConfigError, match="training targets"):
        build_loss("wbce", task="multilabel")


def test_losses_are_finite_for_extreme_logits():
    logits = torch.tensor([[80.0, -80.0]])
    targets = torch.tensor([[0.0, 1.0]])
    for loss in (BCELoss(), WeightedBCELoss([0.1, 0.1]), FocalLoss()):
        value = loss(logits, targets)
        assert torch.isfinite(value) and value > 1
