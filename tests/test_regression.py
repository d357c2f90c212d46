"""task = "regression": numeric manifest columns as targets, their errors, the metrics, the ridge probe.

Known answers: R² is scikit-learn's r2_score, Pearson r scipy's pearsonr, CCC Lin's formula written
out here with numpy; the linear probe on a regression task is scikit-learn's Ridge(alpha = 1 / C).
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_metrics_match_sklearn_scipy_and_lins_formula(rng):
    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score

    from musetag.evaluate.regression import regression_scores

    y = rng.random((40, 3))
    p = y + 0.2 * rng.standard_normal((40, 3)) + np.array([0.0, 0.3, -0.1])
    out = regression_scores(p, y, names=["a", "b", "c"])
    r2 = [r2_score(y[:, j], p[:, j]) for j in range(3)]
    r = [pearsonr(y[:, j], p[:, j])[0] for j in range(3)]
    ccc = [2 * np.cov(y[:, j], p[:, j], bias=True)[0, 1] / (y[:, j].var() + p[:, j].var()
                                                            + (y[:, j].mean() - p[:, j].mean()) ** 2) for j in range(3)]
    assert out["r2_mean"] == pytest.approx(np.mean(r2))
    assert out["pearson_r_mean"] == pytest.approx(np.mean(r))
    assert out["ccc_mean"] == pytest.approx(np.mean(ccc))
    assert out["r2/b"] == pytest.approx(r2[1]) and out["ccc/c"] == pytest.approx(ccc[2])
    from musetag.training.scoring import reported_metric, score

    assert reported_metric("regression") == "r2_mean"
    assert score(p, y, "regression")["pearson_r_mean"] == pytest.approx(np.mean(r))


def _manifest(folder, rows, header=("path", "tags", "split", "valence", "arousal")):
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows:
        (folder / r[0]).write_bytes(b"")
    with open(folder / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    (folder / "ds.toml").write_text('reader = "csv"\ntask = "regression"\ntargets = ["valence", "arousal"]\n'
                                    'preset = "jamendo96"\n[paths]\nmanifest = "m.csv"\n')
    return folder / "ds.toml"


def test_regression_targets_are_read_from_the_manifest_in_toml_order(tmp_path):
    from musetag.data import dataset_vocab, load_dataset_config, load_records

    toml = _manifest(tmp_path, [("a.wav", "", "train", "0.5", "-1"), ("b.wav", "x", "test", "0.25", "2e-1")])
    ds = load_dataset_config(toml)
    records = load_records(ds)
    assert [r.extra["targets"] for r in records] == [(0.5, -1.0), (0.25, 0.2)]
    assert dataset_vocab(ds, records).to_list() == ["valence", "arousal"]
    # a regression manifest needs no tags column (it was "missing column(s) tags")
    toml = _manifest(tmp_path / "no-tags", [("a.wav", "train", "0.5", "-1"), ("b.wav", "test", "0.25", "2e-1")],
                     header=("path", "split", "valence", "arousal"))
    assert [(r.tags, r.extra["targets"]) for r in load_records(load_dataset_config(toml))] == [((), (0.5, -1.0)),
                                                                                             ((), (0.25, 0.2))]


@pytest.mark.parametrize("value, what", [("", "is empty"), ("high", "is 'high', not a finite number"),
                                         ("nan", "is 'nan', not a finite number")])
def test_a_missing_or_non_numeric_target_names_the_row_and_column(tmp_path, value, what):
    from musetag.data import load_dataset_config, load_records
    from musetag.errors import DatasetError

    toml = _manifest(tmp_path, [("a.wav", "", "train", "0.5", "0.1"), ("b.wav", "", "train", "0.2", value)])
    with pytest.raises(DatasetError, match=rf"m.csv:3: column 'arousal' {what}"):
        load_records(load_dataset_config(toml))


def test_regression_config_errors_name_the_fix(tmp_path):
    from musetag.data import load_dataset_config
    from musetag.errors import ConfigError, DatasetError

    toml = _manifest(tmp_path, [("a.wav", "", "train", "0.5", "0.1")])
    text = toml.read_text()
    toml.write_text(text.replace('targets = ["valence", "arousal"]\n', ""))
    with pytest.raises(ConfigError, match="needs targets"):
        load_dataset_config(toml)
    toml.write_text(text.replace('task = "regression"', 'task = "multilabel"'))
    with pytest.raises(ConfigError, match="only for task"):
        load_dataset_config(toml)
    toml.write_text(text.replace('"arousal"]', '"dominance"]'))
    from musetag.data import load_records

    with pytest.raises(DatasetError, match="dominance not in the header"):
        load_records(load_dataset_config(toml))


def test_linear_probe_on_regression_is_sklearn_ridge(rng):
    from sklearn.linear_model import Ridge

    from musetag.training.probe import build_probe, fit, predict

    x = rng.standard_normal((60, 7)).astype(np.float32)
    y = (x @ rng.standard_normal((7, 2)) + 0.5 * rng.standard_normal((60, 2))).astype(np.float32)
    model = fit(build_probe("probe_linear", {}, 2, x, 0), x, y, "regression", 0.2, max_iter=500)
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(predict(model, x, "regression"), Ridge(alpha=5.0).fit(z, y).predict(z), atol=1e-3)


def test_score_command_prints_regression_figures(tmp_path, rng, capsys):
    from scipy.stats import pearsonr

    from musetag.cli import main

    y = rng.random((30, 2))
    p = y + 0.1 * rng.standard_normal((30, 2))
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "tags.txt").write_text("valence\narousal\n")
    assert main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), "--task", "regression",
                 "--tags", str(tmp_path / "tags.txt")]) == 0
    out = capsys.readouterr().out
    r = np.mean([pearsonr(y[:, j], p[:, j])[0] for j in range(2)])
    assert f"pearson_r_mean\t{r:.6f}" in out and out.count("arousal\tR2") == 1
    # without --task the numeric targets were called "a prediction matrix passed as ground truth"
    assert main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy")]) == 2
    assert "score it with --task regression" in capsys.readouterr().err


def test_ccc_and_mse_losses_follow_lins_formula_and_the_task(rng):
    import torch

    from musetag.errors import ConfigError
    from musetag.training.losses import build_loss
    from musetag.training.recipe_checks import loss_mismatch

    y = rng.random((16, 2))
    p = y * 0.5 + 0.2 + 0.05 * rng.standard_normal((16, 2))
    ccc = [2 * np.cov(y[:, j], p[:, j], bias=True)[0, 1] / (y[:, j].var() + p[:, j].var()
                                                            + (y[:, j].mean() - p[:, j].mean()) ** 2) for j in range(2)]
    pt, yt = torch.as_tensor(p), torch.as_tensor(y)
    assert float(build_loss("ccc", task="regression")(pt, yt)) == pytest.approx(1 - np.mean(ccc), abs=1e-6)
    assert float(build_loss("auto", task="regression")(pt, yt)) == pytest.approx(((p - y) ** 2).mean(), abs=1e-6)
    assert loss_mismatch("bce", "regression") and loss_mismatch("mse", "multilabel")
    with pytest.raises(ConfigError, match="needs 'mse' or 'ccc'"):
        build_loss("ce", task="regression")


def test_fine_tuning_on_a_regression_dataset_trains_with_ccc_and_reports_regression_scores(tmp_path):
    import json

    import soundfile as sf

    import musetag

    sr = 16000
    for i in range(12):
        f = 220.0 * (1 + i / 6)
        t = np.arange(sr * 3) / sr
        sf.write(tmp_path / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr)
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split", "pitch", "loud"])
        for i in range(12):
            w.writerow([f"c{i}.wav", "", (["train"] * 6 + ["validation"] * 3 + ["test"] * 3)[i], i / 12, 1 - i / 24])
    (tmp_path / "ds.toml").write_text('reader = "csv"\ntask = "regression"\ntargets = ["pitch", "loud"]\n'
                                      'preset = "jamendo96"\n[paths]\nmanifest = "m.csv"\n')
    run = tmp_path / "run"
    musetag.train("demo", data=tmp_path / "ds.toml", out=run,
                  sets=["progress=false", "epochs=2", "final=last", "loss.name=ccc", "data.crop=64", "data.eval_crop=64",
                        "data.eval_hop=64", "data.batch_size=6"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "r2_mean" and {"pearson_r_mean", "ccc_mean"} <= set(summary["test"])
    from musetag.evaluate.regression import regression_scores

    pred = np.load(run / "predictions" / "test.npy")
    y = np.load(run / "predictions" / "test_targets.npy")
    assert pred.shape == (3, 2)
    assert summary["test"]["r2_mean"] == pytest.approx(regression_scores(pred, y)["r2_mean"], abs=1e-5)
