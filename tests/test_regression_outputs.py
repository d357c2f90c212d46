"""A regression package's values everywhere a user reads them: ``musetag tag`` (printed, JSONL with
``--segments``), ``musetag plot`` (curves on a value axis), the HTTP API and the web page in a real
Chromium (bars with values, a timeline scaled to the values), and ``musetag report`` of a
regression run (R², Pearson r and CCC per target, predicted-against-true plots)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from test_browser import browser  # noqa: F401 - the headless Chromium fixture
from test_package import make_package, tiny_model
from test_serve import Server, wav_bytes

TARGETS = ["valence", "arousal"]


@pytest.fixture(scope="module")
def regression_package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regression")
    return make_package(root / "pkg", model=tiny_model(len(TARGETS), seed=3), tags=TARGETS, task="regression",
                        frames=64, hop=64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "sweep.wav"
    path.write_bytes(wav_bytes(12.0))
    return path


def _musetag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musetag", *args], capture_output=True, text=True, timeout=300)


def test_tag_writes_values_and_per_window_values(regression_package, clip, tmp_path):
    out = tmp_path / "r.jsonl"
    done = _musetag("tag", str(clip), "--model", str(regression_package), "--segments", "--out", str(out),
                    "--backend", "torch")
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text().splitlines()[0])
    assert row["task"] == "regression" and row["top_tags"] == [] and row["decisions"] == []
    assert list(row["scores"]) == TARGETS
    windows = np.array([s["scores"] for s in row["segments"]])
    assert windows.shape == (len(row["segments"]), 2) and len(row["segments"]) > 3
    # the track's value is the mean of its windows' values (the package's aggregation), not a probability
    assert [row["scores"][t] for t in TARGETS] == pytest.approx(windows.mean(axis=0), abs=1e-5)
    assert np.ptp(windows[:, 0]) > 0  # the windows differ: a curve, not a flat line

    printed = _musetag("tag", str(clip), "--model", str(regression_package), "--backend", "torch")
    assert printed.returncode == 0, printed.stderr
    line = printed.stdout.strip().splitlines()[-1]
    assert "\tvalues: valence " in line and "decided" not in line

    plots = tmp_path / "plots"
    drawn = _musetag("plot", str(out), "--out", str(plots))
    assert drawn.returncode == 0, drawn.stderr
    assert len(list(plots.glob("*.png"))) == 1
    assert f"valence {row['scores']['valence']:.2f}" in (plots / "index.html").read_text()


def test_plot_scales_regression_values_to_their_range(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from musetag.tag.timeline import plot_track

    row = {"path": "a.wav", "status": "ok", "duration": 9.0, "task": "regression",
           "scores": {"valence": 0.5, "arousal": -1.0},
           "segments": [{"start": 3.0 * i, "end": 3.0 * i + 3, "scores": [v, -1.0]} for i, v in enumerate([-2.0, 0.5, 3.0])]}
    captured = {}
    original = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        captured["ax"] = fig.axes[0]
        return original(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        plot_track(row, TARGETS, tmp_path / "a.png")
    finally:
        matplotlib.figure.Figure.savefig = original
        pyplot.close("all")
    ax = captured["ax"]
    low, high = ax.get_ylim()
    assert low < -2.0 and high > 3.0 and ax.get_ylabel() == "predicted value"
    assert [line.get_label() for line in ax.get_lines()] == TARGETS  # every target drawn, in order


def test_api_answers_values_with_the_task(regression_package, tmp_path):
    server = Server(regression_package, tmp_path / "serve.log")
    try:
        server.wait()
        answer = httpx.post(server.url + "/v1/tag?segments=true", content=wav_bytes(8.0),
                            headers={"Content-Type": "audio/wav"}, timeout=120).json()
    finally:
        server.stop()
    assert answer["task"] == "regression" and answer["top_tags"] == [] and answer["decisions"] == []
    windows = np.array([s["scores"] for s in answer["segments"]])
    assert [answer["scores"][t] for t in TARGETS] == pytest.approx(windows.mean(axis=0), abs=1e-5)


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_values_and_a_value_timeline(regression_package, clip, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(regression_package, tmp_path / "serve.log")
    try:
        server.wait()
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "simplecnn"))
        browser.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar"))
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [b.get_attribute("data-tag") for b in bars] == TARGETS  # the targets' order, not ranked
        values = [float(b.get_attribute("data-score")) for b in bars]
        assert [b.find_element(By.CSS_SELECTOR, ".value").text for b in bars] == [f"{v:.3f}" for v in values]
        box = browser.find_element(By.ID, "timeline")
        assert len(box.find_elements(By.CSS_SELECTOR, "polyline.series")) == len(TARGETS)
        ymin, ymax = float(box.get_attribute("data-ymin")), float(box.get_attribute("data-ymax"))
        assert ymin < ymax and ymin <= min(values) and ymax >= max(values)
        assert "values" in browser.find_element(By.CSS_SELECTOR, "#model-results .legend").text
    finally:
        server.stop()


def test_report_of_a_regression_run_scores_each_target(tmp_path):
    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score

    from musetag.evaluate.report import make_report

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, size=(40, 2))
    pred = truth + rng.normal(0, 0.1, size=truth.shape)
    page = make_report(pred, tmp_path / "report", groundtruth=truth, tags=TARGETS, task="regression")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    per_target = {row["target"]: row for row in data["per_target"]}
    for k, name in enumerate(TARGETS):
        assert per_target[name]["r2"] == pytest.approx(r2_score(truth[:, k], pred[:, k]), abs=1e-6)
        assert per_target[name]["pearson_r"] == pytest.approx(pearsonr(truth[:, k], pred[:, k])[0], abs=1e-6)
    assert data["test"]["r2_mean"] == pytest.approx(r2_score(truth, pred), abs=1e-6)
    text = page.read_text()
    assert "Predicted against true" in text and "CCC" in text
    assert (tmp_path / "report" / "regression_scatter.png").stat().st_size > 5000


def test_a_regression_package_counts_targets_not_tags(regression_package):
    """`musetag package` and model listings said "2 tags (regression)"."""
    from musetag.inference.loading import load_model

    pkg = load_model(regression_package)
    assert pkg.outputs_phrase == f"{len(TARGETS)} targets" and f"({len(TARGETS)} targets, regression)" in pkg.about()[0]
    assert load_model(make_package(regression_package.parent / "ml", model=tiny_model(3, seed=1),
                                   tags=["a", "b", "c"])).outputs_phrase == "3 tags"


def test_score_and_report_of_a_regression_runs_prediction_files_take_its_task(tmp_path):
    """`musetag score RUN/predictions/test.npy -g RUN/predictions/test_targets.npy` scored a regression run as
    multilabel (and `report` on the files likewise) unless --task regression was given: the run's summary.json
    says its task."""
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, size=(30, 2))
    pred = truth + rng.normal(0, 0.1, size=truth.shape)
    preds = tmp_path / "run" / "predictions"
    preds.mkdir(parents=True)
    np.save(preds / "test.npy", pred)
    np.save(preds / "test_targets.npy", truth)
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"task": "regression", "tags": TARGETS}))
    done = _musetag("score", str(preds / "test.npy"), "-g", str(preds / "test_targets.npy"))
    assert done.returncode == 0, done.stderr
    assert "task regression from" in done.stderr and f"r2_mean\t{r2_score(truth, pred):.6f}" in done.stdout, done.stdout
    # flags that shape multilabel scores only are refused, not dropped without a word
    done = _musetag("score", str(preds / "test.npy"), "-g", str(preds / "test_targets.npy"), "--bootstrap", "100")
    assert done.returncode == 2 and "--bootstrap: multilabel scoring only" in done.stderr, done.stderr
    done = _musetag("report", str(preds / "test.npy"), "-g", str(preds / "test_targets.npy"), "--out",
                    str(tmp_path / "rep"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["task"] == "regression"
