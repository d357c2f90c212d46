"""Round 5: recipe faithfulness and CLI errors found while checking the published recipes."""
from __future__ import annotations

import pytest
import torch

from musetag.errors import ConfigError
from musetag.training.epoch import _loss
from musetag.training.recipes import load_config


def test_unknown_key_without_its_section_names_the_section():
    # `--set eval_crop=128` (the section forgotten) used to suggest nothing useful
    with pytest.raises(ConfigError, match=r"did you mean 'data\.eval_crop'\?"):
        load_config("demo", sets=["eval_crop=128"])
    with pytest.raises(ConfigError, match=r"did you mean 'optim\.lr' or 'swa\.lr'\?"):
        load_config("demo", sets=["lr=0.1"])
    # a near miss at the same level keeps its hint
    with pytest.raises(ConfigError, match=r"did you mean 'epochs'\?"):
        load_config("demo", sets=["epoch=3"])


def test_amlag_attention_combined_loss_is_the_mean_of_both_outputs():
    # AMLAG's submission2/solver.py: loss = (loss1 + loss2) / 2
    def loss_fn(z, y, reduction="mean"):
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction=reduction)

    y = torch.tensor([[1.0, 0.0]])
    a, b = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 0.3]])
    expected = (loss_fn(a, y) + loss_fn(b, y)) / 2
    assert torch.allclose(_loss(loss_fn, (a, b), y, "mean"), expected)
    per_sample = _loss(loss_fn, (a, b), y, "none")
    assert torch.allclose(per_sample, (loss_fn(a, y, "none") + loss_fn(b, y, "none")) / 2)


def test_amlag_attention_recipe_follows_the_authors_code():
    # github.com/sainathadapa/mediaeval-2019-moodtheme-detection, submission2/solver.py:
    # Adam lr 1e-4, then SGD lr 1e-3 (Nesterov, momentum 0.9) after 60 epochs; mixup alpha 1
    cfg = load_config("amlag2019-mobilenetv2_attention")
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-4)
    assert (cfg.optim.switch_to_sgd_epoch, cfg.optim.switch_lr, cfg.optim.momentum, cfg.optim.nesterov) == \
        (60, 1e-3, 0.9, True)
    assert cfg.augment.mixup_alpha == 1.0
    assert cfg.data.batch_size == 16 and cfg.epochs == 120


def _fake_run(tmp_path, final, coteaching=None):
    import json

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    summary = {"final": final, "metric": "pr_auc_macro", "checkpoint": "checkpoints/best.pt",
               "validation": {"pr_auc_macro": 0.5}, "candidates": {"best": {"validation": {"pr_auc_macro": 0.6}}}}
    (run / "summary.json").write_text(json.dumps(summary))
    cot = coteaching or {"enabled": False, "weights": [1.0, 0.0]}
    (run / "config.toml").write_text(f"[coteaching]\nenabled = {str(cot['enabled']).lower()}\n"
                                     f"weights = {cot['weights']!r}\n")
    return run


@pytest.mark.parametrize("final, coteaching, expected", [
    ("snapshots", None, "the average of its snapshots"),
    ("per_class", None, "each tag's output from its own best epoch"),
    ("best", {"enabled": True, "weights": [0.65, 0.35]}, "co-teaching pair mixed 0.65 / 0.35"),
])
def test_package_says_when_the_final_model_is_an_ensemble(tmp_path, capsys, final, coteaching, expected):
    # koutini2019-fa_resnet (final = snapshots), amlag2019-mobilenetv2 (per_class) and selab2021-ensemble
    # (weights 0.65/0.35) score an ensemble; `musetag package RUN` ships best.pt and used to say nothing
    from musetag.commands.package import _note_final_not_packaged

    _note_final_not_packaged(str(_fake_run(tmp_path, final, coteaching)), "best.pt")
    err = capsys.readouterr().err
    assert expected in err and "best.pt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("final, coteaching", [("best", None), ("swa", None),
                                               ("best", {"enabled": True, "weights": [1.0, 0.0]})])
def test_package_is_quiet_when_the_final_model_is_one_network(tmp_path, capsys, final, coteaching):
    from musetag.commands.package import _note_final_not_packaged

    _note_final_not_packaged(str(_fake_run(tmp_path, final, coteaching)), "best.pt")
    assert capsys.readouterr().err == ""


def test_mediaeval_baseline_recipe_follows_the_organisers_code():
    # github.com/MTG/mtg-jamendo-dataset scripts/baseline: ELU (model.py); 100 epochs, Adam 1e-4, then
    # SGD 1e-3 Nesterov from epoch 60 (solver.py); batch 32 (main.py). The recipe had ReLU, Adam 1e-3,
    # a plateau schedule and 50 epochs, and called the optimiser settings "not given".
    cfg = load_config("mediaeval-baseline-vggish")
    assert cfg.model.args.get("act") == "elu"
    assert (cfg.epochs, cfg.optim.name, cfg.optim.lr) == (100, "adam", 1e-4)
    assert (cfg.optim.switch_to_sgd_epoch, cfg.optim.switch_lr, cfg.optim.nesterov) == (60, 1e-3, True)
    assert cfg.data.batch_size == 32 and cfg.loss.name == "bce"
    from musetag.models import create_model

    model = create_model(cfg.model.name, n_classes=3, **cfg.model.args)
    assert any(isinstance(m, torch.nn.ELU) for m in model.modules())


def test_crop_shorter_than_the_network_is_refused_naming_the_setting():
    # `musetag train mediaeval-baseline-vggish --set data.crop=256` used to fail at the first batch with
    # "needs at least 320 along the last axis ... use longer segments (or pad the input)"
    from musetag.models import create_model
    from musetag.training.setup import _check_crops

    cfg = load_config("mediaeval-baseline-vggish", sets=["data.crop=256"])
    model = create_model(cfg.model.name, n_classes=3, **cfg.model.args)
    with pytest.raises(ConfigError, match=r"at least 320 frames, but data\.crop = 256; set --set data\.crop=320"):
        _check_crops(cfg, model, cfg.model.name, "")
    _check_crops(load_config("mediaeval-baseline-vggish"), model, cfg.model.name, "")  # 1366 frames: fine
    wave = create_model("resnet1d", n_classes=3)
    cfg = load_config("soundfusion-resnet1d", sets=["data.eval_crop=44100"])
    with pytest.raises(ConfigError, match=r"samples, but data\.eval_crop = 44100; set --set data\.eval_crop="):
        _check_crops(cfg, wave, "resnet1d", "")


def test_score_given_a_run_folder_names_the_command(tmp_path, capsys):
    # `musetag score RUN_DIR` used to answer only "the following arguments are required: --groundtruth/-g"
    import numpy as np

    from musetag.cli import main

    preds = tmp_path / "run" / "predictions"
    preds.mkdir(parents=True)
    for name in ("test", "test_targets", "validation", "validation_targets"):
        np.save(preds / f"{name}.npy", np.zeros((2, 2), dtype=np.float32))
    assert main(["score", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--groundtruth {preds / 'test_targets.npy'}" in err and f"{preds / 'test.npy'}" in err
    assert main(["score", str(preds / "test.npy")]) == 2
    assert "required: --groundtruth/-g" in capsys.readouterr().err


def test_ensemble_run_names_its_prediction_columns(tmp_path):
    # koutini2019-ensemble / bour2021-average: RUN_DIR/predictions/ had no tags.txt (a single run writes one),
    # so `musetag score` and reports of the ensemble lost the tag names
    import json

    import numpy as np

    from musetag.training.members import run_members
    from musetag.training.results import RunResult

    tags = ["calm", "dark", "happy"]

    def run_one(cfg, member_dir, resume=False, training_data=None):
        pred = member_dir / "predictions"
        pred.mkdir(parents=True)
        for split in ("validation", "test"):
            np.save(pred / f"{split}.npy", np.full((2, 3), 0.5, dtype=np.float32))
            np.save(pred / f"{split}_targets.npy", np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
            (pred / f"{split}_ids.txt").write_text("a\nb\n")
        (pred / "tags.txt").write_text("\n".join(tags) + "\n")
        summary = {"task": "multilabel", "metric": "pr_auc_macro", "validation": {}, "test": {}, "tags": tags}
        (member_dir / "summary.json").write_text(json.dumps(summary))
        return RunResult(member_dir, "best", "pr_auc_macro", 1, {}, {}, 1)

    run = tmp_path / "ens"
    run_members(load_config("koutini2019-ensemble"), run, run_one)
    assert (run / "predictions" / "tags.txt").read_text().split() == tags
    assert json.loads((run / "summary.json").read_text())["tags"] == tags


def test_package_of_an_ensemble_run_names_its_members(tmp_path, capsys):
    # `musetag package RUN` on a koutini2019-ensemble run said "no checkpoints/swa.pt ... is this a musetag
    # run folder?"
    from musetag.cli import main

    run = tmp_path / "ens"
    for name in ("cp_resnet", "fa_resnet"):
        (run / "members" / name / "checkpoints").mkdir(parents=True)
    (run / "predictions").mkdir()
    assert main(["package", str(run), "--out", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ensemble of 2 runs" in err and f"musetag package {run / 'members' / 'cp_resnet'}" in err


@pytest.mark.parametrize("name", ["amlag2019-mobilenetv2", "amlag2019-mobilenetv2_attention"])
def test_amlag_specaugment_follows_the_authors_code(name):
    # submission1/main.ipynb and submission2/dataloader.py: spec_num_mask=2, spec_freq_masking=0.15,
    # spec_time_masking=0.20, spec_prob=0.5 (the recipe used musetag's defaults 0.1 / 0.1 / 1.0)
    a = load_config(name).augment
    assert a.specaugment and (a.time_masks, a.freq_masks) == (2, 2)
    assert (a.max_freq_fraction, a.max_time_fraction, a.specaugment_prob) == (0.15, 0.2, 0.5)


def test_cosine_restarts_anneal_within_each_cycle_step_by_step():
    # koutini2019-fa_resnet --set epochs=5 (5 cycles of one epoch) trained at a constant lr: the cycle's cosine
    # was evaluated once per epoch, so a one-epoch cycle never left its top rate
    from musetag.training.config import ScheduleSection
    from musetag.training.schedules import LRSchedule

    rs = LRSchedule(ScheduleSection(name="cosine_restarts", cycles=5), epochs=5, base_lr=1.0)
    lrs = [rs.lr_at(0, step / 10, 10) for step in range(10)]
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] < 0.05 and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert rs.lr_at(1, 0.0, 10) == pytest.approx(1.0)  # the next cycle restarts
    # longer cycles keep their per-epoch values at the start of each epoch
    rs = LRSchedule(ScheduleSection(name="cosine_restarts", cycles=2), epochs=10, base_lr=1.0)
    assert rs.lr_at(0) == rs.lr_at(5) == 1.0 and rs.lr_at(4) < 0.2
