"""Round 3 of training tests, from using `musetag train` as a demanding user does: resuming with other
settings, a run stopped in its final evaluation or by early stopping, ensembles resumed or trained again
into their folder, and the validation loss of regression runs."""
import json

import numpy as np
import pytest

from musetag.errors import ConfigError

TINY = ["progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=4",
        "model.args.width=2", "max_steps_per_epoch=1", "swa.enabled=false", "final=last", "final_choice=pinned"]


import test_resume  # noqa: E402

dataset = test_resume.dataset  # the same 12-clip synthetic corpus (a module fixture)


def _epochs(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_refused_resume_leaves_config_toml_as_it_was(dataset, tmp_path):
    """`--resume RUN --set model.args.width=8` rewrote config.toml before loading last.pt failed with a torch
    traceback; every later plain `--resume RUN` then failed too (the run was lost unless config.toml was mended
    by hand). A resume asking for fewer epochs than trained rewrote it as well."""
    from musetag.training import train

    run = tmp_path / "run"
    train("demo", data=dataset, out=run, sets=TINY + ["epochs=1"])
    before = (run / "config.toml").read_text()
    with pytest.raises(ConfigError, match=r"cannot resume .*the network: simplecnn\(dropout=0.1, width=2\) there, "
                                          r"simplecnn\(dropout=0.1, width=3\) now \(model\.\*\)"):
        train(resume=run, sets=["epochs=2", "model.args.width=3"])
    assert (run / "config.toml").read_text() == before
    with pytest.raises(ConfigError, match=r"the optimiser: adam there, sgd now \(optim.name\)"):
        train(resume=run, sets=["epochs=2", "optim.name=sgd"])
    with pytest.raises(ConfigError, match=r"the features: .*\(features\.\*\)"):
        train(resume=run, sets=["epochs=2", "features.preset=bour128"])
    assert (run / "config.toml").read_text() == before
    train("demo", data=dataset, out=tmp_path / "three", sets=TINY + ["epochs=3"])
    with pytest.raises(ConfigError, match=r"has trained 3 epochs .*more than epochs = 2.*--set epochs=3"):
        train(resume=tmp_path / "three", sets=["epochs=2"])
    assert "epochs = 3" in (tmp_path / "three" / "config.toml").read_text()
    train(resume=run, sets=["epochs=2"])  # the run itself was not harmed
    assert _epochs(run) == [1, 2]


def test_resume_applies_a_new_learning_rate_and_weight_decay(dataset, tmp_path):
    """`--resume RUN --set optim.lr=...` (or optim.weight_decay) was written into config.toml and logged in the
    schedule line, but the run went on with the checkpoint's values."""
    from musetag.models.weights import load_checkpoint
    from musetag.training import train

    run = tmp_path / "run"
    train("demo", data=dataset, out=run, sets=TINY + ["epochs=1", "schedule.name=constant", "schedule.warmup_epochs=0"])
    train(resume=run, sets=["epochs=2", "optim.lr=0.0123", "optim.weight_decay=0.25"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["lr"] == pytest.approx(0.003) and records[1]["lr"] == pytest.approx(0.0123)
    groups = load_checkpoint(run / "checkpoints" / "last.pt")["training"]["optimizers"][0]["param_groups"]
    assert all(g["weight_decay"] == 0.25 for g in groups)


def test_a_run_stopped_in_its_final_evaluation_is_finished_by_resume(dataset, tmp_path, monkeypatch):
    """Interrupted after its last epoch (final candidates, thresholds, summary.json), a run was 'finished': --resume
    refused it and proposed to train it longer; it now finishes, as the uninterrupted run would have."""
    import musetag.training.loop as loop
    from musetag.training import train

    sets = TINY + ["epochs=2", "swa.enabled=true", "final=swa"]
    reference = train("demo", data=dataset, out=tmp_path / "reference", sets=sets)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop, "write_results", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train("demo", data=dataset, out=tmp_path / "run", sets=sets)
    assert not (tmp_path / "run" / "summary.json").exists()
    result = train(resume=tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").exists()
    assert result.validation == reference.validation and result.test == reference.test
    assert _epochs(tmp_path / "run") == [1, 2]
    with pytest.raises(ConfigError, match="has finished its 2 epochs"):
        train(resume=tmp_path / "run")


def test_an_early_stopped_run_is_not_trained_again_by_resume(dataset, tmp_path, monkeypatch):
    """A run that stopped early was resumed for one more epoch at every --resume (the stop was not remembered)."""
    from musetag.training import train
    from musetag.training.early_stopping import EarlyStopping

    original = EarlyStopping.update
    monkeypatch.setattr(EarlyStopping, "update",  # only the first epoch is ever the best: patience 1 stops after 2
                        lambda self, value, epoch: original(self, 1.0 if epoch == 0 else 0.0, epoch))
    run = tmp_path / "run"
    train("demo", data=dataset, out=run, sets=TINY + ["epochs=6", "early_stopping.patience=1"])
    assert _epochs(run) == [1, 2]
    summary = (run / "summary.json").read_text()
    with pytest.raises(ConfigError, match=r"stopped early after epoch 2 .*early_stopping.patience=2"):
        train(resume=run)
    assert _epochs(run) == [1, 2] and (run / "summary.json").read_text() == summary
    train(resume=run, sets=["early_stopping.patience=2"])  # as the message says: trains on, stops again
    assert _epochs(run) == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["stopped_early"] is True


def _ensemble(tmp_path, dataset):
    recipe = tmp_path / "ens.toml"
    recipe.write_text('description = "two demo members"\n[[members]]\nname = "a"\nrecipe = "demo"\n'
                      '[[members]]\nname = "b"\nrecipe = "demo"\nset = { "snapshots.count" = 2, final = "snapshots" }\n')
    return recipe


def test_ensemble_members_are_checked_before_any_trains_and_never_reused_silently(dataset, tmp_path):
    """An ensemble member refusing a --set (snapshots.count > epochs) failed only after the members before it had
    trained; training again into the ensemble's folder with other settings reused the members already there
    ('member a already trained') and kept the old config.toml; `--resume ENSEMBLE --set ...` did not reach the members."""
    from musetag.training import train

    recipe = _ensemble(tmp_path, dataset)
    with pytest.raises(ConfigError, match=r"ensemble member 'b' .*snapshots.count = 2 is larger than epochs = 1"):
        train(str(recipe), data=dataset, out=tmp_path / "ens", sets=TINY + ["epochs=1"])
    assert not (tmp_path / "ens" / "members").exists()

    run = tmp_path / "ens2"
    train(str(recipe), data=dataset, out=run, sets=TINY + ["epochs=2"])
    config = (run / "config.toml").read_text()
    with pytest.raises(ConfigError, match="already holds a training run.*--resume"):
        train(str(recipe), data=dataset, out=run, sets=TINY + ["epochs=3"])
    with pytest.raises(ConfigError, match=r"member 'a' .*has finished training with other settings .*"
                                          r"model.args: \{.*\} there, \{.*\} now"):
        train(resume=run, sets=["model.args.width=3"])
    assert (run / "config.toml").read_text() == config
    train(resume=run, sets=["data.eval_batch_size=8"])  # how fast it evaluates changes no member: not refused
    # a member not finished refuses a --set that changes its network: the ensemble's config.toml stays as it was
    import shutil

    config = (run / "config.toml").read_text()
    (run / "members" / "a" / "summary.json").unlink()
    shutil.rmtree(run / "members" / "b")
    with pytest.raises(ConfigError, match=r"cannot resume .*members/a.*the network"):
        train(resume=run, sets=["model.args.width=3"])
    assert (run / "config.toml").read_text() == config
    train(resume=run)  # and a plain resume finishes the ensemble
    assert (run / "summary.json").exists() and (run / "members" / "b" / "summary.json").exists()


def test_regression_validation_loss_is_the_squared_error():
    """The validation loss of a regression run (log, metrics.jsonl, summary.json, the plateau schedule, per-class
    early stopping) was the cross-entropy of the values clipped into (0, 1) as if they were probabilities."""
    from musetag.training.scoring import loss_value, per_class_loss

    preds = np.array([[0.5, 120.0], [0.2, 98.0]])
    targets = np.array([[0.5, 130.0], [0.4, 100.0]])
    np.testing.assert_allclose(per_class_loss(preds, targets, "regression"), [0.02, 52.0])
    assert loss_value(preds, targets, "regression") == pytest.approx(26.01)
    assert loss_value(targets, targets, "regression") == 0.0


def test_infinite_values_and_too_many_snapshots_are_refused_with_the_fix():
    """`--set optim.lr=1e400` (inf) passed the '> 0' check and trained to nan; snapshots.count > epochs named no fix."""
    from musetag.training.recipes import load_config

    with pytest.raises(ConfigError, match=r"optim.lr = inf is not valid; expected a number > 0"):
        load_config("demo", sets=["optim.lr=1e400"])
    with pytest.raises(ConfigError, match=r"data.eval_cache_mb = inf is not valid"):
        load_config("demo", sets=["data.eval_cache_mb=inf"])
    with pytest.raises(ConfigError, match=r"snapshots.count = 5 is larger than epochs = 2 .*--set snapshots.count=2"):
        load_config("koutini2019-fa_resnet", sets=["epochs=2"])


def test_packaging_an_unfinished_run_says_so(dataset, tmp_path, capsys):
    """`musetag package` of an interrupted run packaged best.pt as if the run were done (no final choice, no tuned
    thresholds) without a word."""
    from musetag.cli import main
    from musetag.training import train

    run = tmp_path / "run"
    train("demo", data=dataset, out=run, sets=TINY + ["epochs=1"])
    assert main(["package", str(run), "--out", str(tmp_path / "done")]) == 0
    assert "has not finished" not in capsys.readouterr().err
    (run / "summary.json").unlink()
    assert main(["package", str(run), "--out", str(tmp_path / "unfinished")]) == 0
    err = capsys.readouterr().err
    assert "has not finished training (1 epochs trained)" in err and f"musetag train --resume {run}" in err


def test_a_crop_longer_than_the_tracks_is_warned_about(dataset, tmp_path, caplog):
    """`--set data.crop=100000` trained on zero padding without a word (and a large enough one was killed for
    memory): a crop longer than every training track looked at is now named, with the length that fits."""
    import logging

    from musetag.training import train

    sets = [s for s in TINY if not s.startswith("data.crop")] + ["epochs=1"]
    with caplog.at_level(logging.WARNING, logger="musetag"):
        train("demo", data=dataset, out=tmp_path / "long", sets=sets + ["data.crop=2000"])
    said = [r.getMessage() for r in caplog.records if "data.crop = 2000 frames" in r.getMessage()]
    assert len(said) == 1 and "--set data.crop=" in said[0] and "padding" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="musetag"):
        train("demo", data=dataset, out=tmp_path / "short", sets=sets + ["data.crop=32"])
    assert not [r for r in caplog.records if "data.crop" in r.getMessage()]
