"""The labelling page in a real headless Chromium: 10 tracks labelled by keyboard, the predictions change,
the timeline of the current model is drawn under the player, the server is killed and restarted and every
label is still there, and the exported package tags audio; a regression project is labelled with its
sliders by keyboard.

Needs Debian's ``chromium`` and ``chromium-driver``; skipped with a message when they are missing.
"""
from __future__ import annotations

import signal

import pytest

from musetag.cli import main
from test_browser import browser  # noqa: F401 - the fixture
from test_label_command import write_tone
from test_label_http import KEY, LabelServer
from test_package import make_package

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_label_ten_tracks_by_keyboard_kill_restart_and_export(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    music = tmp_path / "music"
    for i in range(7):
        write_tone(music / "low" / f"l{i}.wav", 110 + 15 * i)
        write_tone(music / "high" / f"h{i}.wav", 2000 + 150 * i)
    backbone = make_package(tmp_path / "pkg", frames=64, hop=64)
    project = tmp_path / "proj"
    server = LabelServer([str(music), "--tags", "low,high", "--out", str(project), "--recursive",
                          "--backbone", str(backbone), "--store", str(tmp_path / "store")], tmp_path / "label.log")
    wait = WebDriverWait(browser, 120)

    def open_page(srv):
        browser.get(srv.url + "/")
        wait.until(EC.visibility_of_element_located((By.ID, "key")))  # the page asks for the key
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.ID, "key-form").submit()
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"), "14/14 tracks embedded"))

    def press(key):
        browser.execute_script("document.activeElement && document.activeElement.blur()")
        browser.find_element(By.TAG_NAME, "body").send_keys(key)

    def current_path():
        wait.until(lambda d: d.find_element(By.ID, "filename").text.endswith(".wav"))
        return browser.find_element(By.ID, "filename").text

    labelled, predictions = {}, []
    try:
        server.wait()
        open_page(server)
        for n in range(10):
            wait.until(lambda d: d.find_element(By.ID, "filename").text.split(" ")[0] not in labelled
                       and d.find_element(By.ID, "filename").text.endswith(".wav"))
            path = current_path()
            tag = "low" if path.startswith("low/") else "high"
            press("1" if tag == "low" else "2")
            button = browser.find_element(By.CSS_SELECTOR, f'.tag[data-tag="{tag}"]')
            assert button.get_attribute("aria-pressed") == "true"
            press("\ue007")  # Enter
            wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"saved {path}"))
            labelled[path] = tag
            predictions.append(browser.find_element(By.ID, "predictions").text)
        assert len(labelled) == 10
        assert predictions[2] != predictions[-1]  # the model learned between the clicks
        # the timeline of the proposed track: one point per window, the current model's tags, a slider for the player
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#timeline-holder #timeline")))
        box = browser.find_element(By.CSS_SELECTOR, "#timeline-holder #timeline")
        assert int(box.get_attribute("data-windows")) >= 2 and box.get_attribute("role") == "slider"
        assert {e.get_attribute("data-tag") for e in box.find_elements(By.CSS_SELECTOR, "polyline")} == {"low", "high"}
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"), "10 labelled"))
        counts = browser.find_element(By.ID, "counts").text
        low = sum(1 for t in labelled.values() if t == "low")
        assert f"low: {low}" in counts and f"high: {10 - low}" in counts
    finally:
        server.kill(signal.SIGKILL)
    server = LabelServer([str(project)], tmp_path / "label2.log")
    try:
        server.wait()
        open_page(server)
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"), "10 labelled"))
        review = server.get("/v1/label/review", params={"tag": "low"}).json()["tracks"]
        assert {t["path"]: t["label"] for t in review if t["label"] is not None} == {p: [t] for p, t in labelled.items()}
    finally:
        server.kill(signal.SIGTERM)
    assert main(["label", str(project), "--export", str(tmp_path / "labelled-pkg")]) == 0
    assert main(["tag", str(tmp_path / "labelled-pkg"), str(music / "low" / "l6.wav"),
                 "--out", str(tmp_path / "tags.csv")]) == 0
    import csv

    row = next(csv.DictReader(open(tmp_path / "tags.csv")))
    assert row["status"] == "ok" and float(row["low"]) > float(row["high"])  # a low tone, tagged low


def test_regression_sliders_by_keyboard(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    music = tmp_path / "music"
    for i in range(3):
        write_tone(music / f"l{i}.wav", 110 + 15 * i)
        write_tone(music / f"h{i}.wav", 2000 + 150 * i)
    backbone = make_package(tmp_path / "pkg", frames=64, hop=64)
    project = tmp_path / "proj"
    server = LabelServer([str(music), "--task", "regression", "--targets", "valence,arousal", "--out", str(project),
                          "--backbone", str(backbone), "--store", str(tmp_path / "store")], tmp_path / "label.log")
    wait = WebDriverWait(browser, 120)
    try:
        server.wait()
        browser.get(server.url + "/")
        wait.until(EC.visibility_of_element_located((By.ID, "key")))
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.ID, "key-form").submit()
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress"), "6/6 tracks embedded"))
        assert not browser.find_elements(By.CSS_SELECTOR, ".tag")  # sliders, not tag buttons
        saved = {}
        for n in range(3):
            wait.until(lambda d: d.find_element(By.ID, "filename").text.endswith(".wav")
                       and d.find_element(By.ID, "filename").text.split(" ")[0] not in saved)
            path = browser.find_element(By.ID, "filename").text.split(" ")[0]
            browser.execute_script("document.activeElement && document.activeElement.blur()")
            browser.find_element(By.TAG_NAME, "body").send_keys("1")  # focuses the valence slider
            valence = browser.find_element(By.ID, "slider-0")
            assert browser.switch_to.active_element == valence
            assert "valence" in valence.get_attribute("aria-label")
            valence.send_keys(Keys.HOME)  # 0.00
            valence.send_keys(Keys.ARROW_RIGHT * (10 + 20 * n))  # 0.10, 0.30, 0.50
            browser.find_element(By.TAG_NAME, "body").send_keys("2")
            arousal = browser.find_element(By.ID, "slider-1")
            arousal.send_keys(Keys.END)  # 1.00
            arousal.send_keys(Keys.ENTER)
            wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"saved {path}"))
            saved[path] = round(0.1 + 0.2 * n, 2)
        state = server.get("/v1/label/state").json()
        assert state["labelled"] == 3 and state["task"] == "regression"
    finally:
        server.kill(signal.SIGTERM)
    lines = (project / "labels.csv").read_text().splitlines()[1:]
    found = {line.split(",")[0]: line.split(",")[1] for line in lines}
    assert found == {p: f"valence={v:g};arousal=1" for p, v in saved.items()}
