"""Round 4, the tagging and serving side as a demanding user meets it: resuming ``musetag tag --segments`` into
an output tagged without it, backbone + probe packages on the ONNX paths (``tag --backend onnx``, ``musetag
export``), and the pages' wording and numbers for regression packages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from musetag.cli import main
from musetag.errors import ConfigError, DatasetError

from test_browser import browser  # noqa: F401 - the headless Chromium fixture
from test_label_command import write_tone
from test_package import TAGS, make_package, tiny_model
from test_serve import Server, wav_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def probe_package(tmp_path_factory, backbone) -> Path:
    """A backbone + probe package (``aggregation = "embedding_mean"``): the labelling page's own head on two tones."""
    from musetag.tag.label_package import export_package
    from musetag.tag.label_project import create_project
    from musetag.tag.label_session import LabelSession

    root = tmp_path_factory.mktemp("probe")
    write_tone(root / "music" / "low.wav", 120)
    write_tone(root / "music" / "high.wav", 2500)
    project = create_project(root / "music", root / "proj", "low,high", backbone=str(backbone), store=root / "store")
    session = LabelSession(project)
    session.job.run()
    session.label("low.wav", ["low"], "me")
    session.label("high.wav", ["high"], "me")
    return export_package(project, root / "pkg")


def test_tag_segments_into_an_output_tagged_without_them_tags_those_files_again(tmp_path, monkeypatch):
    """`musetag plot` answers "tag with --segments --out tags.jsonl" when the rows have no windows; doing just that
    skipped every file as already done, so the advice looped for ever."""
    pkg = make_package(tmp_path / "pkg", frames=64, hop=64)
    (tmp_path / "a.wav").write_bytes(wav_bytes(6.0))
    (tmp_path / "b.wav").write_bytes(wav_bytes(4.0, freq=880.0))
    (tmp_path / "bad.wav").write_text("not audio")
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(pkg), "--backend", "torch", "--workers", "0", "--out", "tags.jsonl"]
    assert main(["tag", "a.wav", "b.wav", "bad.wav", *common]) == 3
    assert main(["plot", "tags.jsonl", "--out", "plots"]) == 2  # no windows yet: the error names --segments
    assert main(["tag", "a.wav", "b.wav", "bad.wav", *common, "--segments"]) == 3  # the bad file still failed
    rows = [json.loads(line) for line in Path("tags.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == ["a.wav", "b.wav", "bad.wav"]  # one row each, no duplicates
    assert all(r["segments"] for r in rows if r["status"] == "ok")
    assert main(["plot", "tags.jsonl", "--out", "plots"]) == 0
    assert len(list(Path("plots").glob("*.png"))) == 2
    # a third run finds everything done
    assert main(["tag", "a.wav", "b.wav", *common, "--segments"]) == 0
    assert len(Path("tags.jsonl").read_text().splitlines()) == 3
    # another model's output is refused whole, not emptied of its rows without windows first (the check of the
    # run record came after that filter: every row gone, nothing left to compare, the file rewritten empty)
    other = make_package(tmp_path / "other", frames=64, hop=64, model=tiny_model(len(TAGS), seed=7))
    assert main(["tag", "a.wav", *common[:-1], "plain.jsonl"]) == 0
    before = Path("plain.jsonl").read_text()
    assert main(["tag", "a.wav", "--model", str(other), *common[1:-1], "plain.jsonl", "--segments"]) == 2
    assert Path("plain.jsonl").read_text() == before


def test_onnx_backend_refuses_a_probe_package_before_exporting_its_backbone(probe_package, tmp_path, monkeypatch):
    """The refusal came only after the backbone's ONNX graph had been exported into the cache, for nothing."""
    from musetag.inference.loading import load_model
    from musetag.inference.runners import resolve_backend
    from musetag.inference.tagger import Tagger

    home = tmp_path / "home"
    monkeypatch.setenv("MUSETAG_HOME", str(home))
    package = load_model(probe_package)
    with pytest.raises(ConfigError, match="torch backend only; drop --backend onnx"):
        resolve_backend(package, "onnx")
    with pytest.raises(ConfigError, match="torch backend only"):
        Tagger(package, backend="onnx")
    assert not list(home.rglob("*.onnx"))
    assert resolve_backend(package, "auto") == "torch"


def test_export_refuses_a_probe_package_in_one_line_naming_what_to_run(probe_package, tmp_path, capsys):
    """`musetag export PROBE --format onnx` printed the dynamo exporter's pages (ANSI colours included) and advised
    `--format torchscript`, which failed too."""
    for fmt in ("onnx", "torchscript"):
        assert main(["export", str(probe_package), "--format", fmt, "--out", str(tmp_path / f"m.{fmt}")]) == 2
        err = capsys.readouterr().err
        assert "backbone + probe package is not exported" in err and f"musetag tag {probe_package}" in err
        assert "\x1b[" not in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("m.*"))
    # the library call alike (musetag.export_model), and a bad flag is still refused first
    from musetag.inference.export import export_model

    with pytest.raises(ConfigError, match="backbone \\+ probe package is not exported"):
        export_model(probe_package, "onnx", tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="--tolerance -1"):
        export_model(probe_package, "onnx", tmp_path / "m.onnx", tolerance=-1)


@pytest.mark.browser
@pytest.mark.slow
def test_page_names_the_served_model_and_says_values_for_a_regression_model(browser, tmp_path):  # noqa: F811
    """The page read "Model simplecnn · 2 tags" for a regression package (two probes of one architecture read
    alike), said "bars show whole-song probabilities, highlighted tags pass the decision threshold" above values,
    and drew the highest and lowest windows on the box's edge, half cut."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from test_package import tiny_model

    va = make_package(tmp_path / "va", model=tiny_model(2, seed=3), tags=["valence", "arousal"], task="regression",
                      frames=64, hop=64)
    moods = make_package(tmp_path / "moods", frames=64, hop=64)
    clip = tmp_path / "sweep.wav"
    clip.write_bytes(wav_bytes(12.0))
    server = Server([va, moods], tmp_path / "serve.log")
    try:
        server.wait()
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "simplecnn"))
        assert browser.find_element(By.ID, "model").text == "Model va (simplecnn) · 2 targets · regression"
        browser.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") == "tagged")
        explain = browser.find_element(By.ID, "explain").text
        assert "values" in explain and "probabilities" not in explain and "threshold" not in explain
        assert browser.find_element(By.ID, "results-title").text == "Values"
        box = browser.find_element(By.ID, "timeline")
        ymin, ymax = float(box.get_attribute("data-ymin")), float(box.get_attribute("data-ymax"))
        points = [float(p.split(",")[1]) for line in box.find_elements(By.CSS_SELECTOR, "polyline.series")
                  for p in line.get_attribute("points").split()]
        assert min(points) > 0 and max(points) < 100  # inside the box (its height is 100), not on its edges
        assert "values" in browser.find_element(By.CSS_SELECTOR, "#model-results .legend").text
        options = [o.text for o in Select(browser.find_element(By.ID, "model-select")).options]
        assert options[:2] == ["va (2 targets)", "moods (6 tags)"], options  # the picker said "2 tags" for va
        Select(browser.find_element(By.ID, "model-select")).select_by_value("moods")
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "Model moods (simplecnn) · 6 tags"))
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") == "tagged")
        assert "highlighted" in browser.find_element(By.ID, "explain").text
        assert browser.find_element(By.ID, "results-title").text == "Tags"
        assert ymin < ymax
    finally:
        server.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_review_buttons_of_a_multiclass_project_replace_the_class(browser, tmp_path, backbone):  # noqa: F811
    """In a multiclass project, "is high" on a track labelled low sent both classes: the server refused, and the
    button did nothing but an uncaught error in the console."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from test_label_http import AUTH, KEY, LabelServer

    music = tmp_path / "music"
    for i in range(2):
        write_tone(music / f"low{i}.wav", 110 + 20 * i)
        write_tone(music / f"high{i}.wav", 2000 + 200 * i)
    server = LabelServer([str(music), "--tags", "low,high", "--task", "multiclass", "--out", str(tmp_path / "proj"),
                          "--backbone", str(backbone), "--store", str(tmp_path / "store")], tmp_path / "label.log")
    try:
        server.wait()
        import httpx

        assert httpx.post(server.url + "/v1/label/label", headers=AUTH, timeout=60,
                          json={"path": "low0.wav", "tags": ["low"], "annotator": "me"}).status_code == 200
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(EC.visibility_of_element_located((By.ID, "key")))
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.ID, "key-form").submit()
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"), "4/4 tracks embedded"))
        Select(browser.find_element(By.ID, "review-tag")).select_by_value("high")
        browser.find_element(By.ID, "review-go").click()
        wait.until(lambda d: any("low0.wav" in li.text for li in d.find_elements(By.CSS_SELECTOR, "#review li")))
        browser.find_element(By.CSS_SELECTOR, '#review button[aria-label="low0.wav is high"]').click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "saved low0.wav: high"))
        labels = httpx.get(server.url + "/v1/label/review?tag=high", headers=AUTH, timeout=60).json()["tracks"]
        assert {t["path"]: t["label"] for t in labels}["low0.wav"] == ["high"]
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert not errors, errors
    finally:
        server.kill()


def test_regression_project_predicts_nothing_before_its_first_label(tmp_path, backbone):
    """A ridge head on no label "predicted" 0.00 for every target, and the page's sliders started there, at the
    bottom of their range, instead of mid-range (a quick Enter saved 0 for a target never rated)."""
    from musetag.tag.label_project import create_project
    from musetag.tag.label_session import LabelSession

    music = tmp_path / "music"
    write_tone(music / "low.wav", 120)
    write_tone(music / "high.wav", 2500)
    project = create_project(music, tmp_path / "proj", "valence,arousal", task="regression", backbone=str(backbone),
                             store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    assert session.propose("random") is not None
    assert session.predictions("low.wav") == [] and session.predictions("high.wav") == []
    assert session.review("valence") == []  # not every track at 0.00
    with pytest.raises(DatasetError, match="no track is rated yet"):
        session.timeline("low.wav")  # not a flat line at 0
    session.label("low.wav", [], "me", {"valence": 0.8, "arousal": 0.3})
    assert {p["tag"]: p["score"] for p in session.predictions("high.wav")} == pytest.approx(
        {"valence": 0.8, "arousal": 0.3}, abs=1e-4)  # one label: its values, the head's mean
    session.undo("me")
    assert session.predictions("high.wav") == []


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_tag_refuses_a_threshold_its_package_never_applies(task, tmp_path, capsys):
    """`--threshold 0.3` on a regression (or multiclass) package was taken and ignored without a word."""
    from test_package import tiny_model

    tags = ["valence", "arousal"] if task == "regression" else ["low", "mid", "high"]
    pkg = make_package(tmp_path / "pkg", model=tiny_model(len(tags), seed=3), tags=tags, task=task, frames=64, hop=64)
    clip = tmp_path / "a.wav"
    clip.write_bytes(wav_bytes(3.0))
    args = ["tag", str(clip), "--model", str(pkg), "--backend", "torch", "--workers", "0"]
    assert main([*args, "--threshold", "0.3", "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{pkg} is a {task} package" in err and "drop --threshold" in err
    assert not (tmp_path / "t.csv").exists()
    assert main(args) == 0
    # the service alike: refused when no served model decides by a threshold; beside a multilabel model, the
    # threshold goes to that one and the other is served as it is
    from fastapi.testclient import TestClient

    from musetag.serve.app import create_app

    with pytest.raises(ConfigError, match="no served model decides tags by a threshold"):
        create_app([pkg], threshold="0.3", max_concurrency=1)
    tagging = make_package(tmp_path / "ml", frames=64, hop=64)
    with TestClient(create_app([pkg, tagging], threshold="0.3", max_concurrency=1)) as client:
        r = client.get("/v1/models")
        assert r.status_code == 200 and len(r.json()["models"]) == 2, r.text
    # and the Ray engine's driver, before any actor starts (the check sits in resolve_thresholds)
    from musetag.inference.loading import load_model
    from musetag.inference.tagger import resolve_thresholds

    with pytest.raises(ConfigError, match="drop --threshold"):
        resolve_thresholds(load_model(pkg), "tuned")


def test_plot_draws_rows_of_two_models_joined_in_one_file(tmp_path, capsys):
    """`cat a.jsonl b.jsonl > both.jsonl` of two models (56 and 3 tags): plot stopped at the first row of the second
    model with "56 scores per window for 3 tags", the pictures half written and no index.html."""
    def row(path, tags, values):
        return {"path": path, "status": "ok", "duration": 6.0,
                "top_tags": [{"tag": tags[0], "score": values[0]}], "decisions": [], "warnings": [],
                "scores": dict(zip(tags, values)),
                "segments": [{"start": 0.0, "end": 3.0, "scores": values}, {"start": 3.0, "end": 6.0, "scores": values}]}

    both = tmp_path / "both.jsonl"
    both.write_text(json.dumps(row("a.wav", ["x", "y", "z"], [0.1, 0.7, 0.2])) + "\n"
                    + json.dumps(row("b.wav", ["p", "q"], [0.9, 0.3])) + "\n")
    assert main(["plot", str(both), "--out", str(tmp_path / "plots")]) == 0
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2
    assert (tmp_path / "plots" / "index.html").is_file()
