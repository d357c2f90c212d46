"""The small-data fine-tuning recipe's one new piece: the body learns at ``init.body_lr_scale`` x lr."""
from __future__ import annotations

import pytest
import torch

from musetag.errors import ConfigError
from musetag.models import create_model
from musetag.training.recipes import load_config
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


# ------------------------------------------------------------------ tiny datasets: samples per epoch
def test_min_epoch_samples_makes_an_epoch_whole_passes_with_fresh_orders_and_crops():
    from musetag.training.data import EpochSampler

    plain = EpochSampler(5, seed=3)
    plain.set_epoch(2)
    longer = EpochSampler(5, seed=3, min_samples=12)
    longer.set_epoch(2)
    items = longer.order()
    assert len(items) == len(longer) == 12
    assert items[:5] == plain.order()  # the first pass is the epoch it always was
    for start in (0, 5):
        assert sorted(i for i, _ in items[start:start + 5]) == list(range(5))  # each whole pass covers every clip
    assert len({s for _, s in items}) == 12  # new crop seeds on every pass
    assert items[5:10] != items[:5]
    assert EpochSampler(5, seed=3, min_samples=3).order() == EpochSampler(5, seed=3).order()  # no-op when larger
    # torchrun: the ranks' shards are the same 12 items, split
    shards = [EpochSampler(5, seed=3, min_samples=12, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(2)
    assert sorted(x for s in shards for x in s.order()) == sorted(items)
    assert [len(s) for s in shards] == [6, 6]


def test_keep_frozen_stages_stay_frozen_after_the_rest_thaws():
    from musetag.training.freezing import StageFreezer, model_stages

    torch.manual_seed(0)
    model = create_model("simplecnn", n_classes=3)
    names = [n for n, _ in model_stages(model)]
    freezer = StageFreezer(model, 3, 1, keep_frozen=1)
    assert freezer.stage_names == names[:3]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 1, 96, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in (0, 1, 2):
        model.train()
        assert freezer.apply(epoch)  # the first stage is frozen at every epoch
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
    after = model.state_dict()
    kept = [k for k in after if k.startswith(names[0] + ".")]
    thawed = [k for k in after if k.startswith(names[1] + ".") and k.endswith("weight")]
    assert kept and all(torch.equal(after[k], before[k]) for k in kept)  # weights and batch-norm statistics
    assert thawed and not all(torch.equal(after[k], before[k]) for k in thawed)
    with pytest.raises(ConfigError, match="keep_frozen"):
        StageFreezer(model, 2, 1, keep_frozen=3)
    with pytest.raises(ConfigError, match="raise freeze_stages"):
        load_config(None, sets=["init.freeze_stages=2", "init.keep_frozen=3", "init.path=x.pt"])


# --------------------------------------------------------- SpecAugment of a waveform model's own mel
def test_specaugment_masks_the_mel_inside_a_waveform_model_with_the_batch_generator():
    import numpy as np

    from musetag.features.augment import BatchAugment, InModelSpecAugment

    cfg = load_config(None, sets=["augment.specaugment=true", "augment.freq_masks=2", "augment.time_masks=2",
                                  "augment.max_freq_fraction=0.2", "augment.max_time_fraction=0.2"]).augment
    model = create_model("won_musicnn", n_classes=3)
    augment = BatchAugment(cfg, kind="waveform", n_classes=3, task="multiclass")
    augment.spec_hook = model.spec_augment = InModelSpecAugment(cfg)
    x = torch.randn(4, 1, 16000, generator=torch.Generator().manual_seed(0))
    y = torch.eye(3)[[0, 1, 2, 0]]

    def masked_mel(seed):
        augment.train()
        model.train()
        xa, _ = augment(x, y, np.random.default_rng(seed))
        assert augment.spec_hook.rng is not None
        return model._mel(xa)

    mel = masked_mel(1)
    zero_bands = (mel == 0).all(dim=-1).sum().item()  # whole frequency bands masked to the batch-norm mean
    zero_frames = (mel == 0).all(dim=-2).sum().item()
    assert zero_bands > 0 and zero_frames > 0
    torch.testing.assert_close(masked_mel(1), mel)  # the batch's generator decides the masks: reproducible
    model.eval()
    clean = model._mel(x)
    assert (clean == 0).all(dim=-1).sum().item() == 0  # evaluation never masks


def test_specaugment_on_a_waveform_model_without_a_mel_inside_is_refused():
    from types import SimpleNamespace

    from musetag.features.presets import get_preset
    from musetag.training.setup import _spec_augment_inside

    cfg = load_config("soundfusion-resnet1d", sets=["augment.specaugment=true"])
    run = SimpleNamespace(models=[create_model("resnet1d", n_classes=3)], cfg=cfg,
                          data=SimpleNamespace(feature_config=get_preset("waveform16k")))
    with pytest.raises(ConfigError, match="computes no mel inside"):
        _spec_augment_inside(run)


# ----------------------------------------------------- the Musicnn recipe end to end on real clips
def test_musicnn_finetune_keeps_the_front_end_and_trains_the_back_end_on_real_clips(tmp_path):
    import json

    import musetag
    from conftest import pretrained_package
    from test_probe import _clips, _dataset

    rows = _clips()  # 9 real gtzan3 clips (skips without the shared data), one per split and genre
    pretrained_package("jamendo-musicnn")  # skips without the weights mirror
    toml = _dataset(tmp_path / "ds", "waveform16k", rows)
    run = tmp_path / "run"
    torch.set_num_threads(1)
    musetag.train("smalldata-finetune-musicnn", data=toml, out=run, sets=[
        "progress=false", "epochs=2", "init.freeze_epochs=1", "data.min_epoch_samples=16", "data.batch_size=8",
        "data.eval_max_segments=2", "swa.enabled=false"])
    report = json.loads((run / "transfer.json").read_text())
    assert report["frozen_stages"][:6] == ["spec_bn", "layers.0", "layers.1", "layers.2", "layers.3", "layers.4"]
    assert len(report["frozen_stages"]) == 11
    from musetag.training.transfer import load_source

    start = load_source("jamendo-musicnn").state_dict
    # the published weights' subnormal floats (~98k, 7x slower on x86) are set to zero when they are loaded
    tiny = torch.finfo(torch.float32).tiny
    start = {k: v.masked_fill((v != 0) & (v.abs() < tiny), 0) if v.is_floating_point() else v for k, v in start.items()}
    assert report["flushed_subnormals"] > 0
    final = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["training"]["models"][0]
    front = [k for k in final if k.startswith(("spec_bn.", "layers.")) and k in start]
    back = [k for k in final if k.startswith(("layer1.", "dense1.")) and k.endswith("weight")]
    assert front and all(torch.equal(final[k], start[k].to(final[k].dtype)) for k in front)
    assert back and not any(torch.equal(final[k], start[k]) for k in back)  # trained after the first epoch
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    # the logged lr is the schedule's (the new classifier's); the body's is beside it at init.body_lr_scale
    assert metrics[0]["lr"] == pytest.approx(1e-3)
    assert [m["lr_body"] for m in metrics] == pytest.approx([0.1 * m["lr"] for m in metrics])


def test_a_tiny_training_split_without_min_epoch_samples_gets_a_warning_with_the_fix(caplog):
    from musetag.training.setup import _warn_tiny_epochs

    cfg = load_config("gtzan-genre")
    with caplog.at_level("WARNING", logger="musetag.train"):
        _warn_tiny_epochs(15, 16, 15, cfg)
    assert "an epoch is 1 optimiser step of 16" in caplog.text and "data.min_epoch_samples=128" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="musetag.train"):
        _warn_tiny_epochs(128, 16, 15, load_config("gtzan-genre", sets=["data.min_epoch_samples=128"]))
        _warn_tiny_epochs(600, 16, 600, cfg)
    assert caplog.text == ""
