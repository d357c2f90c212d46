"""Schedules, SWA, snapshots, co-teaching, early stopping and checkpoints, each on its own."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.weights import load_checkpoint
from musetag.training import checkpoint as ckpt
from musetag.training.config import OptimSection, ScheduleSection
from musetag.training.coteaching import coteaching_losses, forget_rate_at, small_loss_indices
from musetag.training.early_stopping import EarlyStopping, PerClassEarlyStopping
from musetag.training.schedules import LRSchedule, build_optimizer
from musetag.training.swa import SWA, Snapshots, swa_start_epoch


def test_bour_cosine_schedule_matches_torch():
    """SGD lr 0.5, cosine over 200 epochs (eta_min 0) = torch's CosineAnnealingLR stepped per epoch."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200, eta_min=0)
    sched = LRSchedule(ScheduleSection(name="cosine"), epochs=200, base_lr=0.5)
    for epoch in range(200):
        assert sched.lr_at(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        ref.step()
    assert sched.lr_at(100) == pytest.approx(0.25)


def test_plateau_divides_by_ten_after_five_bad_epochs_and_resumes():
    sched = LRSchedule(ScheduleSection(name="plateau", factor=0.1, patience=5), epochs=50, base_lr=1e-3)
    sched.end_epoch(1.0)
    for _ in range(4):
        sched.end_epoch(1.0)
    assert sched.lr_at(5) == pytest.approx(1e-3)
    copy_ = LRSchedule(ScheduleSection(name="plateau", factor=0.1, patience=5), epochs=50, base_lr=1e-3)
    copy_.load_state_dict(sched.state_dict())
    for s in (sched, copy_):
        s.end_epoch(1.0)
        assert s.lr_at(6) == pytest.approx(1e-4)


def test_warmup_swa_lr_and_restarts():
    warm = LRSchedule(ScheduleSection(name="constant", warmup_epochs=2), epochs=10, base_lr=1.0)
    assert warm.lr_at(0, 0.5, 4) == pytest.approx(3 / 8) and warm.lr_at(1, 0.75, 4) == pytest.approx(1.0)
    assert warm.lr_at(3) == 1.0
    # a warm-up shorter than one step (--set epochs=N scales warmup_epochs 1 -> 0.01) never exceeds the rate:
    # (done + 1) / total was 1 / (0.01 * 20) = 5x here, 15x-50x in shortened recipes
    short = LRSchedule(ScheduleSection(name="cosine", warmup_epochs=0.01), epochs=1, base_lr=1e-4)
    assert short.lr_at(0, 0.0, 20) <= 1e-4 and short.lr_at(0, 0.0, 20) == pytest.approx(1e-4)
    ramp = [LRSchedule(ScheduleSection(name="constant", warmup_epochs=w), epochs=4, base_lr=1.0).lr_at(0, p, 3)
            for w in (0.1, 0.5, 1.0) for p in (0.0, 1 / 3, 2 / 3)]
    assert max(ramp) <= 1.0
    swa = LRSchedule(ScheduleSection(name="cosine"), epochs=10, base_lr=1.0, swa_start=8, swa_lr=0.05,
                     swa_anneal_epochs=1)
    assert swa.lr_at(9) == pytest.approx(0.05)
    rs = LRSchedule(ScheduleSection(name="cosine_restarts", cycles=2), epochs=10, base_lr=1.0)
    assert rs.lr_at(0) == rs.lr_at(5) == 1.0 and rs.lr_at(4) < 0.2


def test_optimizers_from_the_seeds():
    params = list(nn.Linear(2, 1).parameters())
    sgd = build_optimizer(params, OptimSection(name="sgd", lr=0.5, weight_decay=2e-5))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 2e-5
    ams = build_optimizer(params, OptimSection(name="amsgrad"))
    assert isinstance(ams, torch.optim.Adam) and ams.defaults["amsgrad"]


def test_swa_averages_weights_and_recomputes_batch_norm():
    assert swa_start_epoch(200, 0.2) == 160  # Bour: SWA over the last 40 of 200 epochs
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    swa = SWA(model, epochs=10, length=0.3)
    weights = []
    for epoch in range(10):
        with torch.no_grad():
            model[0].weight.fill_(float(epoch))
        if swa.update(model, epoch):
            weights.append(float(epoch))
    assert weights == [7.0, 8.0, 9.0] and swa.n_averaged == 3
    assert torch.allclose(swa.averaged.module[0].weight, torch.full((4, 3), 8.0))
    inputs = [torch.randn(16, 3) + 5 for _ in range(4)]
    averaged = swa.finalize(inputs)
    assert float(averaged[1].running_mean.abs().sum()) > 0  # statistics recomputed from the data


def test_snapshots_at_cycle_ends():
    s = Snapshots(5, 50)
    assert s.epochs_at == [9, 19, 29, 39, 49]
    assert np.allclose(Snapshots.average([np.ones((2, 2)), np.zeros((2, 2))]), 0.5)


def test_coteaching_selects_small_losses_for_the_peer():
    assert forget_rate_at(0, 0.05) == 0 and forget_rate_at(5, 0.05) == pytest.approx(0.025)
    assert forget_rate_at(50, 0.05) == pytest.approx(0.05)
    la = torch.tensor([0.1, 5.0, 0.2, 0.3, 9.0])
    lb = torch.tensor([4.0, 0.1, 0.2, 0.3, 0.4])
    assert small_loss_indices(la, 0.4).tolist() == [0, 2, 3]
    ua, ub, info = coteaching_losses(la, lb, 0.4)
    # A learns from B's easy samples (1, 2, 3) and B from A's (0, 2, 3)
    assert float(ua) == pytest.approx((5.0 + 0.2 + 0.3) / 3)
    assert float(ub) == pytest.approx((4.0 + 0.2 + 0.3) / 3)
    assert info["kept"] == 3


def test_early_stopping_joint_and_per_class():
    es = EarlyStopping(patience=2)
    assert es.update(0.5, 0) and not es.update(0.4, 1) and not es.should_stop
    es.update(0.45, 2)
    assert es.should_stop and es.best_epoch == 0
    pc = PerClassEarlyStopping(3)
    preds = {0: np.full((2, 3), 0.1), 1: np.full((2, 3), 0.2), 2: np.full((2, 3), 0.3)}
    losses = {0: [1.0, 1.0, 1.0], 1: [0.5, 2.0, 0.9], 2: [0.7, 3.0, 0.8]}
    for epoch in range(3):
        improved = pc.update(losses[epoch], epoch)
        pc.store("validation", preds[epoch], improved)
    assert pc.best_epoch.tolist() == [1, 0, 2]
    assert np.allclose(pc.composite("validation")[0], [0.2, 0.1, 0.3])
    assert pc.epochs_in_use() == [0, 1, 2]


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    from musetag.models import create_model

    model = create_model("simplecnn", n_classes=3, in_channels=1)
    meta = {"model": model.musetag_config, "features": {"kind": "mel", "mean": 0.0, "std": 1.0},
            "tags": ["a", "b", "c"], "task": "multilabel",
            "segment": {"frames": 64, "hop": 64, "aggregation": "mean", "max_segments": 0},
            "thresholds": [0.3, 0.4, 0.5]}
    path = ckpt.save_checkpoint(ckpt.model_payload(model, meta=meta, kind="best", epoch=3), tmp_path / "best.pt")
    rebuilt, payload = ckpt.load_model(path)
    x = torch.randn(2, 1, 32, 64)
    model.eval()
    assert torch.allclose(rebuilt(x), model(x))
    assert payload["tags"] == ["a", "b", "c"] and payload["thresholds"] == [0.3, 0.4, 0.5]
    assert payload["musetag_version"] and payload["epoch"] == 3
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="not a musetag checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
