"""End-to-end training runs on a tiny synthetic corpus: the run folder, self-describing
checkpoints, the final-model strategies and their choice on validation, single-label scores with class
names, evaluation windows cut once, ``validate_every``, where the time went, and the errors raised
before any work."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from musetag.errors import ConfigError
from musetag.models.weights import load_checkpoint
from musetag.training import train
from musetag.training.checkpoint import load_model

TINY = ["progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=4",
        "model.args.width=4"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from musetag.data.synth import make_corpus

    root = tmp_path_factory.mktemp("train")
    out = {}
    for task in ("multilabel", "multiclass"):
        make_corpus(root / task, n_clips=16, seconds=1.5, seed=11, task=task, clips_per_artist=1,
                    split_fractions=(0.5, 0.25, 0.25))
        out[task] = root / task / "dataset.toml"
    return out


def _segments_predict(model, payload, arrays):
    """Predict whole tracks from a checkpoint alone: its normalisation, segments and aggregation."""
    from musetag.training.data import segments

    mean, std = payload["features"]["mean"], payload["features"]["std"]
    seg = payload["segment"]
    out = []
    with torch.no_grad():
        for x in arrays:
            x = (x[None] if x.ndim == 2 else x).astype(np.float32)
            windows = segments((x - mean) / std, seg["frames"], seg["hop"], seg["max_segments"])
            probs = torch.sigmoid(model(torch.from_numpy(windows).float()))
            out.append(probs.mean(dim=0).numpy())
    return np.stack(out)


def test_run_folder_and_self_describing_checkpoint(corpora, tmp_path):
    run = tmp_path / "run"
    result = train("demo", data=corpora["multilabel"], out=run, sets=TINY + ["epochs=2", "final=best", "final_choice=pinned"])
    for rel in ("config.toml", "metrics.jsonl", "summary.json", "plots/training.png", "checkpoints/best.pt",
                "checkpoints/last.pt", "predictions/validation.npy", "predictions/test.npy",
                "predictions/validation_targets.npy", "predictions/validation_ids.txt"):
        assert (run / rel).exists(), rel
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # counted from 1, as the log counts
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "pr_auc_macro" and summary["final"] == "best"
    best = max(range(2), key=lambda e: records[e]["val_pr_auc_macro"]) + 1
    assert summary["best_epoch"] == result.best_epoch == best  # chosen on the reported metric, 1-based
    # the checkpoint alone rebuilds model + features and reproduces the saved predictions
    model, payload = load_model(run / "checkpoints" / "best.pt")
    assert payload["tags"] == ["bright", "dark", "dense", "drums", "fast", "major", "minor", "slow"]
    assert payload["task"] == "multilabel" and payload["features"]["n_mels"] == 96
    assert isinstance(payload["features"]["mean"], float) and len(payload["thresholds"]) == 8
    assert payload["segment"] == {"frames": 32, "hop": 32, "aggregation": "mean", "max_segments": 0}
    ids = (run / "predictions" / "validation_ids.txt").read_text().split()
    from musetag.training.recipes import load_toml_config
    from musetag.training.data import load_training_data

    data = load_training_data(load_toml_config(run / "config.toml"), run, progress=False)
    assert data.splits["validation"].ids == ids
    raw = [np.load(p).astype(np.float32) for p in data.splits["validation"].paths]
    again = _segments_predict(model, payload, raw)
    np.testing.assert_allclose(again, np.load(run / "predictions" / "validation.npy"), atol=1e-5)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["training"]["epoch"] == 2  # finished epochs, what resume reads
    # the epoch its weights are from, counted as best.pt counts (it said 2, one past the run); and the thresholds
    # of the last epoch's validation, so `package --checkpoint last` decides as tuned (it had none)
    assert last["epoch"] == 1 and load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] <= 1
    assert last["thresholds"] is not None and len(last["thresholds"]) == len(summary["tags"])


@pytest.fixture(scope="module")
def multiclass_run(corpora, tmp_path_factory):
    """Issue 18 in one small single-label run: three epochs validated every second one, SWA and three
    snapshots as candidates (bfloat16 autocast on CPU too); counts the evaluation windows cut."""
    from musetag.training import evaluation

    root = tmp_path_factory.mktemp("multiclass")
    cut = []
    original = evaluation.segments
    evaluation.segments = lambda *a, **k: cut.append(1) or original(*a, **k)
    try:
        result = train("demo", data=corpora["multiclass"], out=root / "run",
                       sets=TINY + ["epochs=3", "validate_every=2", "snapshots.count=3", "max_steps_per_epoch=2",
                                    "amp=bf16"])
    finally:
        evaluation.segments = original
    return result, root / "run", len(cut)


def test_single_label_scores_match_sklearn_with_class_names(multiclass_run):
    _, run, _ = multiclass_run
    summary = json.loads((run / "summary.json").read_text())
    pred_dir = run / "predictions"
    tags = (pred_dir / "tags.txt").read_text().split()
    assert tags == summary["tags"] == ["ambient", "classical", "electronic", "rock"]
    for split in ("validation", "test"):
        p, y = np.load(pred_dir / f"{split}.npy"), np.load(pred_dir / f"{split}_targets.npy")
        decided = p.argmax(axis=1)
        got = summary[split]
        assert got["accuracy"] == pytest.approx(accuracy_score(y, decided))
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, decided))
        assert got["f1_macro"] == pytest.approx(f1_score(y, decided, labels=range(4), average="macro", zero_division=0))
        cm = summary["confusion_matrix"][split]
        assert cm["classes"] == tags and cm["matrix"] == confusion_matrix(y, decided, labels=range(4)).tolist()


def test_score_reads_the_class_names_beside_the_predictions(multiclass_run, capsys):
    from musetag.cli import main

    _, run, _ = multiclass_run
    pred_dir = run / "predictions"
    assert main(["score", str(pred_dir / "test.npy"), "-g", str(pred_dir / "test_targets.npy"),
                 "--task", "multiclass"]) == 0
    out = capsys.readouterr().out
    assert "f1_macro" in out and "balanced_accuracy" in out
    assert "classical" in out and "electronic" in out


def test_final_choice_epochs_and_time(multiclass_run):
    result, run, _ = multiclass_run
    summary = json.loads((run / "summary.json").read_text())
    choice = summary["final_choice"]
    assert choice["preferred"] == "swa" and choice["rule"] == "validation" and summary["final"] == choice["chosen"]
    y = np.load(run / "predictions" / "validation_targets.npy")
    accuracy = {name: accuracy_score(y, np.load(run / "predictions" / (
        "validation.npy" if name == summary["final"] else f"{name}-validation.npy")).argmax(axis=1))
        for name in choice["validation"]}
    assert set(accuracy) >= {"best", "last", "swa", "snapshots"}
    assert accuracy[summary["final"]] == max(accuracy.values())
    if accuracy["swa"] == max(accuracy.values()):
        assert summary["final"] == "swa"  # ties keep the configured final
    # validate_every = 2: epochs 2 and 3 (the last) are validated, epoch 1 is not; epochs count from 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert ["val_accuracy" in r for r in records] == [False, True, True]
    validated = {r["epoch"]: r["val_accuracy"] for r in records if "val_accuracy" in r}
    assert summary["best_epoch"] == result.best_epoch == max(validated, key=lambda e: (validated[e], -e))
    assert set(summary["time"]) >= {"data", "training", "validation", "final_evaluation", "writing", "total"}
    assert summary["time"]["total"] == pytest.approx(sum(v for k, v in summary["time"].items() if k != "total"),
                                                     abs=0.05)


def test_evaluation_windows_are_cut_once_per_track(multiclass_run):
    _, run, cut = multiclass_run
    summary = json.loads((run / "summary.json").read_text())
    n = summary["n_tracks"]
    # two validated epochs and four candidates (best, last, swa, three snapshots) score the same tracks:
    # without reuse that is 2 x validation + 4+ x (validation + test) cuts
    assert cut == n["validation"] + n["test"]


def test_multiclass_uses_accuracy_and_softmax(multiclass_run):
    result, run, _ = multiclass_run
    assert result.metric == "accuracy" and "accuracy" in result.validation
    preds = np.load(run / "predictions" / "validation.npy")
    np.testing.assert_allclose(preds.sum(axis=1), 1.0, atol=1e-5)
    assert np.load(run / "predictions" / "validation_targets.npy").dtype == np.int64


def test_per_class_snapshots_and_swa_candidates(corpora, tmp_path):
    run = tmp_path / "run"
    sets = TINY + ["epochs=3", "early_stopping.per_class=true", "snapshots.count=3", "swa.enabled=true",
                   "swa.length=0.67", "final=per_class", "final_choice=pinned"]
    train("demo", data=corpora["multilabel"], out=run, sets=sets)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["candidates"]) >= {"best", "last", "swa", "snapshots", "per_class"}
    assert summary["final"] == "per_class" and len(summary["per_class_best_epoch"]) == 8
    # each tag's column is that tag's validation output at its own best epoch
    used = sorted(set(summary["per_class_best_epoch"]))  # 1-based, as the checkpoints' names
    assert sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints" / "epochs").glob("*.pt")) == used
    assert all((run / "checkpoints" / f"snapshot-{k}.pt").exists() for k in range(3))
    swa = load_checkpoint(run / "checkpoints" / "swa.pt")
    assert swa["kind"] == "swa"
    assert (run / "predictions" / "swa-validation.npy").exists()


def test_coteaching_pair(corpora, tmp_path, caplog):
    run = tmp_path / "run"
    sets = TINY + ["epochs=1", "coteaching.enabled=true", "coteaching.peer=simplecnn",
                   "coteaching.peer_args={width = 4}", "coteaching.weights=[0.65, 0.35]", "coteaching.num_gradual=0"]
    with caplog.at_level("INFO"):
        train("demo", data=corpora["multilabel"], out=run, sets=sets)
    # the first line names both networks (SELAB's log named only the model, not the peer that trains too)
    assert " and its co-teaching peer simplecnn (" in caplog.text
    assert (run / "checkpoints" / "peer_best.pt").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_pr_auc_macro_model0" in records[0] and "val_pr_auc_macro_model1" in records[0]


def test_errors_come_before_any_work(corpora, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="optim.lrr"):
        train("demo", data=corpora["multilabel"], out=run, sets=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="has no argument"):
        train("demo", data=corpora["multilabel"], out=run, sets=["model.args.depth=3"])
    assert not (run / "metrics.jsonl").exists()
    with pytest.raises(ConfigError, match="--data"):
        train("demo", out=tmp_path / "nodata")
    with pytest.raises(ConfigError, match="dataset config not found"):
        train("demo", data=tmp_path / "missing.toml", out=tmp_path / "x")
    # a folder (the one holding the TOML, or the audio): said so, with the TOML it holds
    toml = Path(corpora["multilabel"])
    with pytest.raises(ConfigError, match=f"{toml.parent} is a folder; pass the dataset's TOML file, e.g. .*\\.toml"):
        train("demo", data=toml.parent, out=tmp_path / "y")


def test_refuses_to_overwrite_a_run(corpora, tmp_path):
    run = tmp_path / "run"
    train("demo", data=corpora["multilabel"], out=run, sets=TINY + ["epochs=1", "max_steps_per_epoch=1"])
    with pytest.raises(ConfigError, match="--resume"):
        train("demo", data=corpora["multilabel"], out=run, sets=TINY)


def test_cli_lists_recipes_and_prints_config():
    out = subprocess.run([sys.executable, "-m", "musetag", "train", "--list"], capture_output=True, text=True)
    assert out.returncode == 0 and "bour2021-filters-m128-i224-wbce" in out.stdout
    cfg = subprocess.run([sys.executable, "-m", "musetag", "train", "bour2021-convs-m96-i128-bce", "--print-config",
                          "--set", "epochs=3"], capture_output=True, text=True)
    assert cfg.returncode == 0 and "epochs = 3" in cfg.stdout and 'name = "bour_convs"' in cfg.stdout
    bad = subprocess.run([sys.executable, "-m", "musetag", "train", "demo", "--set", "optim.name=sgdd"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "optim.name" in bad.stderr and "amsgrad" in bad.stderr


def test_the_python_api_draws_no_progress_bars_into_a_pipe(corpora, tmp_path, capfd):
    """`musetag.train(...)` with stderr a pipe or a log file wrote tqdm redraws into it (the commands draw
    bars only on a terminal); `progress=true` still asks for them."""
    import tomllib

    sets = [s for s in TINY if not s.startswith("progress")] + ["epochs=1", "max_steps_per_epoch=2"]
    train("demo", data=corpora["multilabel"], out=tmp_path / "quiet", sets=sets)
    assert "\r" not in capfd.readouterr().err  # pytest's stderr is not a terminal
    assert tomllib.loads((tmp_path / "quiet" / "config.toml").read_text())["progress"] is False
    train("demo", data=corpora["multilabel"], out=tmp_path / "asked", sets=sets + ["progress=true"])
    assert "\r" in capfd.readouterr().err
