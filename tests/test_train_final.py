"""What a run does around its epochs (issue 18): schedules that follow ``--set epochs``, the final model
chosen on validation unless pinned, the decision rule for small validation sets. The end-to-end parts (scores
with class names, windows cut once, ``validate_every``, time) run in test_train.py's multiclass run."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from musetag.training.recipes import list_recipes, load_config
from musetag.training.run_length import EPOCH_KEYS, describe_schedule
from musetag.training.schedules import LRSchedule
from musetag.training.swa import Snapshots, swa_start_epoch

# ------------------------------------------------------------------ item 4: the schedule follows --set epochs
def test_bour_recipe_shortened_to_four_epochs_ends_at_a_low_learning_rate():
    name = "bour2021-convs-m128-i128-bce"
    full, short = load_config(name), load_config(name, sets=["epochs=4"])
    assert (full.epochs, full.schedule.t_max) == (200, 200)
    assert (short.epochs, short.schedule.t_max) == (4, 4)
    lr = LRSchedule(short.schedule, epochs=4, base_lr=short.optim.lr).lr_at(3)
    assert lr == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # cosine over 4 epochs: 0.073
    assert lr < 0.2 * short.optim.lr
    # before issue 18: t_max stayed 200 and the last of 4 epochs trained at ~0.5
    kept = load_config(name, sets=["epochs=4", "schedule.t_max=200"])  # an explicit --set is kept
    assert LRSchedule(kept.schedule, epochs=4, base_lr=0.5).lr_at(3) > 0.49
    start = swa_start_epoch(4, short.swa.length)
    line = describe_schedule(short, start, [])
    assert "4 epochs" in line and "cosine schedule over 4 epochs" in line and "SWA over epochs 4-4" in line


def test_every_shipped_recipe_is_unchanged_at_its_own_length_and_scales_otherwise():
    from musetag.training.recipes import read_recipe

    for name in list_recipes():
        cfg = load_config(name)
        assert load_config(name, sets=[f"epochs={cfg.epochs}"]).to_dict() == cfg.to_dict(), name
        half = load_config(name, sets=[f"epochs={max(1, cfg.epochs // 2)}"])
        ratio, table = half.epochs / cfg.epochs, read_recipe(name)
        for section, key, integer in EPOCH_KEYS:
            before, after = getattr(getattr(cfg, section), key), getattr(getattr(half, section), key)
            if before > 0 and key in table.get(section, {}):  # the recipe's own length: scaled
                assert after == (max(1, round(before * ratio)) if integer else round(before * ratio, 4)), (name, key)
            else:  # defaults and zeros (no warm-up, no switch...) stay
                assert after == before, (name, section, key)


def test_an_invalid_length_is_refused_before_anything_is_scaled(caplog):
    """`--set epochs=-1` logged "warmup_epochs 1 -> -0.0333 follow the run's length" before the refusal."""
    from musetag.errors import ConfigError

    with caplog.at_level("INFO"), pytest.raises(ConfigError, match="epochs = -1 is not valid"):
        load_config("demo", sets=["epochs=-1"])
    assert "follow the run's length" not in caplog.text
    # a negative step cap trained 0 steps ("train loss 0.0000") and still reported a final model
    for key in ("max_steps_per_epoch", "checkpoint_every_steps"):
        with pytest.raises(ConfigError, match=f"{key} = -1 is not valid; expected a number >= 0"):
            load_config("demo", sets=[f"{key}=-1"])


def test_the_tiny_epoch_warning_says_what_is_set(caplog):
    """It said "2 optimiser steps" under max_steps_per_epoch=1 and named early stopping when it was off."""
    from musetag.training.setup import _warn_tiny_epochs

    with caplog.at_level("WARNING"):
        _warn_tiny_epochs(6, 4, 6, load_config("demo", sets=["max_steps_per_epoch=1"]))
    text = caplog.text
    assert "an epoch is 1 optimiser step of 4" in text and "early stopping" not in text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_tiny_epochs(6, 4, 6, load_config("demo", sets=["early_stopping.patience=3"]))
    assert "an epoch is 2 optimiser steps of 4, so early stopping (patience 3 epochs), freezing and the schedule" in caplog.text


# ------------------------------------------------------------------ item 5: the final model, chosen on validation
def _fake_run(final_choice, val_targets, test_targets):
    data = SimpleNamespace(task="multilabel", splits={"validation": SimpleNamespace(targets=val_targets),
                                                      "test": SimpleNamespace(targets=test_targets)})
    cfg = SimpleNamespace(final_choice=final_choice, final="swa")
    return SimpleNamespace(data=data, metric="pr_auc_macro", cfg=cfg, dist=SimpleNamespace(is_main=True))


def test_final_candidate_is_chosen_on_validation_unless_pinned():
    from musetag.training.final import choose_final

    rng = np.random.default_rng(3)
    val_y = (rng.random((60, 5)) < 0.3).astype(np.float32)
    test_y = (rng.random((40, 5)) < 0.3).astype(np.float32)
    good = lambda y: np.clip(0.6 * y + 0.4 * rng.random(y.shape), 0, 1)  # noqa: E731
    candidates = {"best": (good(val_y), good(test_y)), "last": (good(val_y), good(test_y)),
                  "swa": (rng.random(val_y.shape), rng.random(test_y.shape))}  # SWA: measurably worse
    truth = {n: average_precision_score(val_y, v, average="macro") for n, (v, _) in candidates.items()}
    assert truth["swa"] < min(truth["best"], truth["last"]) - 0.2
    final, scores, choice = choose_final(_fake_run("validation", val_y, test_y), "swa", candidates)
    assert final == max(truth, key=truth.get) != "swa"
    assert choice["preferred"] == "swa" and choice["chosen"] == final and "pinned" in choice["reason"]
    for name in candidates:
        assert choice["validation"][name] == pytest.approx(truth[name])
        assert scores[name]["validation"]["pr_auc_macro"] == pytest.approx(truth[name])
    pinned, _, choice = choose_final(_fake_run("pinned", val_y, test_y), "swa", candidates)
    assert pinned == "swa" and choice["rule"] == "pinned"
    # a tie keeps the configured final
    tie = {"best": candidates["best"], "swa": candidates["best"]}
    assert choose_final(_fake_run("validation", val_y, test_y), "swa", tie)[0] == "swa"


def test_validate_every_is_checked():
    from musetag.errors import ConfigError

    with pytest.raises(ConfigError, match="validate_every"):
        load_config("demo", sets=["validate_every=0"])
    with pytest.raises(ConfigError, match="final_choice"):
        load_config("demo", sets=["final_choice=best"])


# ------------------------------------------------------------------ item 9: decisions on small validation sets
def test_small_validation_sets_get_calibrated_decisions():
    from musetag.training.decisions import MIN_POSITIVES, decision_thresholds
    from musetag.evaluate.thresholds import fit_thresholds

    rng = np.random.default_rng(0)
    n_tags = 60
    prior = rng.uniform(0.01, 0.06, n_tags)  # ~2 tags per track, like mood tags
    train_y = (rng.random((900, n_tags)) < prior).astype(np.float32)
    val_y = (rng.random((140, n_tags)) < prior).astype(np.float32)
    val_p = np.clip(0.15 * val_y + rng.random(val_y.shape) * 0.5, 0, 1)  # a weak model
    f1_th = fit_thresholds(val_p, val_y)
    f1_on = (val_p >= np.asarray(f1_th)).sum(axis=1).mean()
    th, info = decision_thresholds("auto", val_p, val_y, train_y)
    on = (val_p >= np.asarray(th)).sum(axis=1)
    assert info["rule"] == "prior_rate" and str(MIN_POSITIVES) in info["reason"]
    density = train_y.sum(axis=1).mean()
    assert abs(on.mean() - density) < 0.5 and info["tags_per_track_validation"] == pytest.approx(on.mean())
    assert f1_on > 2 * density  # what max-F1 thresholds do on 140 clips: many tags on for each clip
    # each tag is on for its training share of validation tracks
    share = (val_p >= np.asarray(th)).mean(axis=0)
    assert np.abs(share - train_y.mean(axis=0)).max() < 1.5 / len(val_p) + 1e-9
    # a large validation set keeps the F1-tuned thresholds
    big_y = (rng.random((4000, 3)) < 0.3).astype(np.float32)
    big_p = np.clip(0.3 * big_y + rng.random(big_y.shape) * 0.7, 0, 1)
    th, info = decision_thresholds("auto", big_p, big_y, big_y)
    assert info["rule"] == "max_f1" and th == list(fit_thresholds(big_p, big_y, keep_f1=True))


def test_max_f1_thresholds_keep_their_f1_under_the_strict_decision_rule():
    """Packages decide ``score > threshold`` (the MediaEval rule); precision_recall_curve's F1 counts
    ``score >= candidate``. The tuned threshold must switch on exactly the validation tracks its F1 was
    computed for: with the candidate itself, '>' dropped the positive at the threshold on every tag."""
    from sklearn.metrics import f1_score, precision_recall_curve

    from musetag.evaluate.thresholds import fit_thresholds

    rng = np.random.default_rng(3)
    y = (rng.random((300, 8)) < 0.2).astype(np.float32)
    p = np.clip(0.25 * y + rng.random(y.shape) * 0.75, 0, 1).astype(np.float32)  # float32, as networks give
    th = np.asarray(fit_thresholds(p, y, keep_f1=True))
    for j in range(y.shape[1]):
        precision, recall, _ = precision_recall_curve(y[:, j], p[:, j])
        best = np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))
        assert f1_score(y[:, j], p[:, j] > th[j]) == pytest.approx(best, abs=1e-12), j
        assert f1_score(y[:, j], p[:, j] > np.float32(th[j])) == pytest.approx(best, abs=1e-12), j
