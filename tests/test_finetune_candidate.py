"""Fine-tuning for hundreds of clips: smalldata-finetune-musicnn from the published jamendo-musicnn weights
on a tiny synthetic set (multilabel and regression), its cross-validation on given folds, and the
``select.finetune`` candidate of probe-auto.

Known answers: the CV score is scikit-learn's average precision per kept tag, macro-averaged, of the
out-of-fold predictions; the regression scores are scikit-learn's R²; the subnormal count is counted
with torch on the published weights; the frozen front end equals the published weights (subnormals zeroed).
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import pretrained_package
from musetag.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPE = "smalldata-finetune-musicnn"
FAST = ["epochs=2", "init.freeze_epochs=1", "data.min_epoch_samples=8", "data.batch_size=4", "data.eval_batch_size=8",
        "data.eval_max_segments=1", "swa.enabled=false", "progress=false"]
N = 12


def _synthetic(folder, task: str, preset: str = "waveform16k"):
    """12 clips of 3.2 s (16 kHz tones, louder and higher along i), 6 artists, 8 train / 2 validation / 2 test;
    multilabel tags 'happy' (a tag jamendo-musicnn knows) and 'low'; regression targets 'happy' and 'energy'."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sr = 16000
    t = np.arange(int(sr * 3.2)) / sr
    splits = ["train"] * 8 + ["validation"] * 2 + ["test"] * 2
    with open(folder / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split", "group", "happy", "energy"])
        for i in range(N):
            f = 200.0 * 2 ** (i / 4)
            sf.write(folder / f"c{i}.wav", ((0.1 + 0.05 * i % 3) * np.sin(2 * np.pi * f * t)).astype(np.float32), sr)
            tags = ";".join(x for x, on in (("happy", i % 2 == 0), ("low", i < 6)) if on)
            w.writerow([f"c{i}.wav", tags, splits[i], f"artist{i // 2}", f"{(i % 2) * 0.5 + i / 40:.3f}", f"{i / N:.3f}"])
    text = f'reader = "csv"\ntask = "{task}"\npreset = "{preset}"\ncache = "cache"\n'
    if task == "regression":
        text += 'targets = ["happy", "energy"]\n'
    (folder / f"{task}.toml").write_text(text + '[paths]\nmanifest = "m.csv"\n')
    return folder / f"{task}.toml"


def _groups(toml, ids):
    from musetag.data import load_dataset_config
    from musetag.data.datasets import load_records

    artist = {r.id: r.group for r in load_records(load_dataset_config(toml))}
    return [artist[i] for i in ids]


def _published():
    from musetag.training.transfer import load_source

    return load_source("jamendo-musicnn").state_dict


def _subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < torch.finfo(torch.float32).tiny)


def test_cross_validated_finetune_starts_from_the_published_weights_and_scores_honest_out_of_fold_predictions(tmp_path):
    from sklearn.metrics import average_precision_score

    from musetag.training.finetune_candidate import cross_validate_finetune, load_pool, pooled_split, train_final
    from musetag.training.loop import _run
    from musetag.training.probe_cv import make_folds

    pretrained_package("jamendo-musicnn")  # skips without the weights mirror
    toml = _synthetic(tmp_path / "ds", "multilabel")
    data = load_pool(RECIPE, toml, FAST)
    pool = pooled_split(data)
    assert len(pool) == 10 and data.tags == ["happy", "low"]
    folds = make_folds("multilabel", pool.targets, _groups(toml, pool.ids), 2, seed=0)
    keep = np.array([True, True])
    cand = cross_validate_finetune(RECIPE, toml, data, folds, keep, tmp_path / "cv", _run, sets=FAST, seed=3)

    published = _published()
    n_sub = sum(int(_subnormal(v).sum()) for v in published.values() if v.is_floating_point())
    assert n_sub > 0
    oof = cand.oof[0]
    for k, (tr, te) in enumerate(folds):
        run = tmp_path / "cv" / f"fold-{k}"
        report = json.loads((run / "transfer.json").read_text())
        assert report["fraction_loaded"] > 0.99 and report["flushed_subnormals"] == n_sub
        assert report["classifier_rows"]["classifier.weight"] == ["happy"]  # a tag the backbone knows keeps its row
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(metrics) == 2 and "val_loss" not in metrics[0] and "val_loss" in metrics[1]  # validated once
        assert (run / "predictions" / "validation_ids.txt").read_text().split() == [pool.ids[i] for i in te]
        np.testing.assert_array_equal(oof[te], np.load(run / "predictions" / "validation.npy"))
        final = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["training"]["models"][0]
        front = [k for k in final if k.startswith(("spec_bn.", "layers.")) and k in published]
        assert front and all(torch.equal(final[k], published[k].masked_fill(_subnormal(published[k]), 0)
                                         .to(final[k].dtype)) for k in front if published[k].is_floating_point())
        cfg = (run / "config.toml").read_text()
        assert 'final = "last"' in cfg and "seed = 3" in cfg
    y = pool.targets
    expected = np.mean([average_precision_score(y[:, j], oof[:, j]) for j in range(2)])
    assert cand.pooled[0] == pytest.approx(expected, abs=1e-6)
    assert cand.name == f"finetune:{RECIPE} / finetune" and cand.cpu_s > 0 and len(cand.per_fold[0]) == 2

    # when it wins probe-auto's choice: the same recipe on train+validation, the last epoch kept, test scored once
    train_final(RECIPE, toml, data, FAST, 3, tmp_path / "final", {"chosen": [cand.name]}, _run)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_final(RECIPE, toml, data, FAST, 3, tmp_path / "final", {}, _run)
    summary = json.loads((tmp_path / "final" / "summary.json").read_text())
    assert summary["select"]["chosen"] == [cand.name] and summary["select"]["metric"] == "pr_auc_macro"
    ckpt = torch.load(tmp_path / "final" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["model"]["name"] == "won_musicnn"
    assert len((tmp_path / "final" / "metrics.jsonl").read_text().splitlines()) == 2
    assert np.load(tmp_path / "final" / "predictions" / "test.npy").shape == (2, 2)


def test_the_recipe_fine_tunes_regression_targets_with_ccc_and_copies_no_classifier_row(tmp_path):
    from sklearn.metrics import r2_score

    import musetag
    from musetag.training.recipes import load_toml_config

    pretrained_package("jamendo-musicnn")
    toml = _synthetic(tmp_path / "ds", "regression")
    run = tmp_path / "run"
    musetag.train(RECIPE, data=toml, out=run, sets=[*FAST, "loss.name=ccc"])
    report = json.loads((run / "transfer.json").read_text())
    assert report["fraction_loaded"] > 0.99
    assert report["classifier_rows"] == {}  # target 'happy' is a value, not the backbone's tag 'happy'
    assert "classifier.weight" in report["skipped_classifier"]
    assert load_toml_config(run / "config.toml").loss.name == "ccc"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "r2_mean"
    pred = np.load(run / "predictions" / "test.npy")
    assert pred.shape == (2, 2) and np.isfinite(pred).all()
    val_pred, val_y = np.load(run / "predictions" / "validation.npy"), np.load(run / "predictions" / "validation_targets.npy")
    assert summary["validation"]["r2_mean"] == pytest.approx(
        np.mean([r2_score(val_y[:, j], val_pred[:, j]) for j in range(2)]), abs=1e-5)
    # mse trains too
    musetag.train(RECIPE, data=toml, out=tmp_path / "run-mse", sets=[*FAST, "loss.name=mse"])
    assert load_toml_config(tmp_path / "run-mse" / "config.toml").loss.name == "mse"
    assert np.isfinite(np.load(tmp_path / "run-mse" / "predictions" / "test.npy")).all()


def test_probe_auto_with_select_finetune_scores_it_on_the_same_folds_and_keeps_the_higher(tmp_path):
    import musetag

    pretrained_package("jamendo-musicnn")
    folder = tmp_path / "ds"
    wave = _synthetic(folder, "multilabel")
    emb = folder / "emb.toml"
    emb.write_text(wave.read_text().replace('"waveform16k"', '"embed:jamendo-musicnn"').replace('"cache"', '"cache-emb"'))
    run = tmp_path / "auto"
    sets = ["progress=false", 'select.backbones=["jamendo-musicnn"]', 'select.heads=["linear"]', "select.folds=2",
            "select.pair_top=0", "select.bootstrap=0", "select.finetune=true",
            "select.finetune_sets=" + json.dumps(FAST), f"data.dataset={json.dumps(str(emb))}"]
    musetag.train("probe-auto", out=run, sets=sets)
    info = json.loads((run / "finetune-cv.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert info["chosen"] == (info["finetune"]["cv"] > info["best_probe"]["cv"])
    assert info["best_probe"]["cv"] == pytest.approx(summary["select"]["candidates"][0]["cv"]) or info["chosen"]
    ckpt = torch.load(run / "checkpoints" / summary["checkpoint"].split("/")[-1], map_location="cpu", weights_only=False)
    assert ckpt["model"]["name"] == ("won_musicnn" if info["chosen"] else "probe_linear")
    assert len(list((run / "finetune-cv").glob("fold-*"))) == 2
    with pytest.raises(ConfigError, match="fits a probe"):
        musetag.train("probe-auto", out=tmp_path / "bad", sets=[*sets, "select.finetune_recipe=probe-linear"])
