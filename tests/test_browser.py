"""The web page in a real headless Chromium: choose (or drop) a song, play it, see its tags as
sorted bars and over time (a timeline that seeks the player and follows it, by mouse and keyboard),
with one of two served models or both side by side; the API documentation page renders without
internet.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped with a
message when they are missing.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_package import TAGS, make_package, tiny_model
from test_serve import Server, wav_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--mute-audio", "--window-size=1000,1100",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def song(tmp_path) -> Path:
    """A real Jamendo song when the shared data is there, else a generated clip."""
    from conftest import SHARED_DATA

    songs = sorted((SHARED_DATA / "jamendo-songs" / "mp3").glob("*.mp3"))
    if songs:
        return songs[0]
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(20.0))
    return path


@pytest.fixture
def page(browser, tmp_path):
    """A real `musetag serve` process and the browser on its page, once the model is shown:
    yields ``(server, wait)``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    pkg = make_package(tmp_path / "pkg", frames=64, hop=64, thresholds=[0.5] * len(TAGS), licence="MIT")
    # a second model with the same front end (it shares the decoder): its own weights and licence
    other = make_package(tmp_path / "other", frames=64, hop=64, model=tiny_model(len(TAGS), seed=7),
                         licence="CC-BY-NC-SA-4.0")
    server = Server([pkg, other], tmp_path / "serve.log", "--max-upload-mb", "20", "--max-concurrency", "1")
    try:
        server.wait()
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "simplecnn"))
        yield server, wait
    finally:
        server.stop()


def test_page_tags_a_song(page, browser, song, tmp_path):
    from selenium.webdriver.common.by import By

    _, wait = page
    browser.find_element(By.ID, "file").send_keys(str(song))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar"))
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    shown = [b.get_attribute("data-tag") for b in bars]
    scores = [float(b.get_attribute("data-score")) for b in bars]
    assert sorted(shown) == sorted(TAGS)  # 6 tags, all shown (fewer than the top 15)
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert bars[0].find_element(By.CSS_SELECTOR, ".value").text.endswith("%")
    # the bars are drawn: their width follows the probability
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .fill")[0].size["width"] > 0)
    src = browser.find_element(By.ID, "audio").get_attribute("src")
    assert src.startswith("blob:")  # plays the chosen file locally (object URL)
    assert song.name in browser.find_element(By.ID, "status").text
    shot = tmp_path / "tagged-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    check_timeline(browser, wait)

    # both served models side by side, for the same upload
    from selenium.webdriver.support.ui import Select

    played = browser.execute_script("return document.getElementById('audio').currentTime")
    about = browser.find_element(By.ID, "about")
    assert "MIT" in about.text and "CC-BY-NC-SA" not in about.text  # the first model alone
    Select(browser.find_element(By.ID, "model-select")).select_by_value("__all__")  # tags the song again
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model-result .timeline")) == 2)
    # side by side, each model's own licence is shown (was: the first model's only)
    wait.until(lambda d: "CC-BY-NC-SA-4.0" in about.text)
    assert "pkg: Licence: MIT" in about.text and "other: Licence: CC-BY-NC-SA-4.0" in about.text
    assert "2 models side by side" in browser.find_element(By.ID, "model").text
    sections = browser.find_elements(By.CSS_SELECTOR, ".model-result")
    assert [s.get_attribute("data-model") for s in sections] == ["pkg", "other"]
    for section in sections:
        assert len(section.find_elements(By.CSS_SELECTOR, ".timeline polyline.series")) == 5
        assert len(section.find_elements(By.CSS_SELECTOR, ".bar")) == len(TAGS)
    first, second = ([float(b.get_attribute("data-score")) for b in s.find_elements(By.CSS_SELECTOR, ".bar")]
                     for s in sections)
    assert first != second  # two different models answered
    assert browser.execute_script("return document.getElementById('audio').currentTime") == pytest.approx(played)
    timelines = browser.find_elements(By.CSS_SELECTOR, ".model-result .timeline")
    timelines[1].click()  # either timeline seeks the one player; both cursors follow
    wait.until(lambda d: len({t.get_attribute("data-time") for t in timelines}) == 1)

    # a file that is not audio: the page shows the server's error message
    bad = tmp_path / "notes.mp3"
    bad.write_text("These are my notes about the concert, not a song.\n" * 3)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait.until(lambda d: "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))
    assert "text file" in browser.find_element(By.ID, "status").text


def check_timeline(browser, wait):
    """The timeline of the song just tagged: drawn from the API's windows, clicking it seeks the
    player and the cursor follows, keyboard access, and the labels a screen reader reads."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, "timeline")
    lines = box.find_elements(By.CSS_SELECTOR, "polyline.series")
    assert len(lines) == 5  # the top 5 tags, each a line through its windows' scores
    duration = float(box.get_attribute("aria-valuemax"))
    windows = int(box.get_attribute("data-windows"))
    assert duration > 60 and windows == len(lines[0].get_attribute("points").split()) > 50
    assert box.get_attribute("role") == "slider" and box.get_attribute("tabindex") == "0"
    assert "arrow keys" in box.get_attribute("aria-label")
    wait.until(lambda d: d.execute_script("return document.getElementById('audio').readyState") >= 1)

    def now():
        return browser.execute_script("return document.getElementById('audio').currentTime")

    def cursor_x():
        return float(box.find_element(By.CSS_SELECTOR, "line.cursor").get_attribute("x1"))

    # a click at three quarters of the width moves the player three quarters into the song
    width = box.size["width"]
    ActionChains(browser).move_to_element_with_offset(box, int(width * 0.25), 0).click().perform()
    wait.until(lambda d: abs(now() - 0.75 * duration) < 0.02 * duration)
    assert cursor_x() == pytest.approx(750, abs=20)  # the cursor (viewBox 0..1000) is there too
    assert "of" in box.get_attribute("aria-valuetext")
    # keyboard: the timeline takes focus; arrows move 5 s, Home goes to the start
    box.send_keys(Keys.ARROW_LEFT)
    assert browser.switch_to.active_element == box
    wait.until(lambda d: abs(now() - (0.75 * duration - 5)) < 0.5)
    box.send_keys(Keys.HOME)
    wait.until(lambda d: now() < 0.5)
    assert cursor_x() < 5
    box.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait.until(lambda d: abs(now() - 10) < 0.5)
    # playing: the cursor follows the player
    before = cursor_x()
    browser.execute_script("document.getElementById('audio').play()")
    wait.until(lambda d: now() > 11.0)
    browser.execute_script("document.getElementById('audio').pause()")
    wait.until(lambda d: cursor_x() > before)
    assert cursor_x() == pytest.approx(now() / duration * 1000, abs=2)
    table = browser.find_element(By.CSS_SELECTOR, "#model-results details.windows")
    assert f"({windows} windows)" in table.text


def test_drop_a_file_onto_the_page_and_read_the_docs_offline(page, browser, song, tmp_path):
    """Drag and drop: Selenium cannot drag a file from the desktop, so the test hands the page a
    real File (read by a file input it adds) in the same ``drop`` event a browser fires."""
    from selenium.webdriver.common.by import By

    server, wait = page
    browser.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = 'carrier';"
        "i.style.display = 'none'; document.body.appendChild(i);")
    browser.find_element(By.ID, "carrier").send_keys(str(song))
    browser.execute_script(
        "const f = document.getElementById('carrier').files[0]; const dt = new DataTransfer(); dt.items.add(f);"
        "const zone = document.getElementById('drop');"
        "for (const type of ['dragenter', 'dragover', 'drop'])"
        "  zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar"))
    scores = [float(b.get_attribute("data-score")) for b in browser.find_elements(By.CSS_SELECTOR, "#bars .bar")]
    assert len(scores) == len(TAGS) and scores == sorted(scores, reverse=True)
    assert song.name in browser.find_element(By.ID, "status").text
    assert "over" not in (browser.find_element(By.ID, "drop").get_attribute("class") or "")

    # Swagger UI draws the API from the server's own copy (this browser has no internet)
    browser.get(server.url + "/docs")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/tag", "/v1/tags", "/healthz"} <= paths
    browser.save_screenshot(str(tmp_path / "docs.png"))


@pytest.mark.shared
def test_page_with_the_default_pretrained_model_shows_real_moods_and_its_licence(browser, tmp_path):
    """`musetag serve` without a model serves the default pretrained mood model; the page names it,
    its licence and source, and tags a real song with mood/theme tags."""
    from conftest import pretrained_package, shared_path
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    pretrained_package("mtg-jamendo-baseline")  # into this session's cache, from the mirror
    song = sorted(shared_path("jamendo-songs", "mp3").glob("Veränderung*.mp3"))[0]
    server = Server("", tmp_path / "serve.log", "--max-concurrency", "1")
    try:
        server.wait()
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "mtg-jamendo-baseline"))
        about = browser.find_element(By.ID, "about")
        wait.until(lambda d: "Apache-2.0" in about.text)
        assert "MTG/mtg-jamendo-dataset" in about.text and "Bogdanov" in about.text
        browser.find_element(By.ID, "file").send_keys(str(song))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar"))
        shown = [b.get_attribute("data-tag") for b in browser.find_elements(By.CSS_SELECTOR, "#bars .bar")]
        assert len(shown) == 15 and {"love", "melodic"} & set(shown[:3])  # the golden top moods of this song
        # highlighted: the tags the organisers' published thresholds decide for it (score > threshold); with
        # 0.5 for every tag none was ever highlighted (this model's scores stay under 0.4)
        from test_pretrained import _golden_baseline, _published

        names, gtags, golden = _golden_baseline()
        tags, values = _published()
        row = golden[names.index(song.stem)][[gtags.index(t) for t in tags]]
        decided = {t for t, s, v in zip(tags, row, values) if s > v}
        highlighted = {b.get_attribute("data-tag") for b in browser.find_elements(By.CSS_SELECTOR, "#bars .bar.on")}
        assert decided and highlighted == decided & set(shown)
        # this model hears the centred 29.1 s excerpt only: its timeline is one window, in the middle
        box = browser.find_element(By.ID, "timeline")
        assert box.get_attribute("data-windows") == "1"
        duration = float(box.get_attribute("aria-valuemax"))
        xs = [float(p.split(",")[0]) for p in box.find_element(By.CSS_SELECTOR, "polyline").get_attribute("points").split()]
        assert xs[0] == pytest.approx((duration - 29.1) / 2 / duration * 1000, abs=2)
        assert xs[1] - xs[0] == pytest.approx(29.1 / duration * 1000, abs=2)
        browser.save_screenshot(str(tmp_path / "pretrained-page.png"))
    finally:
        server.stop()


def test_page_asks_for_the_api_key_and_sends_it(browser, tmp_path):
    """A server with --api-key: the page sees `auth: true` on /healthz, asks for the key, keeps it in
    sessionStorage and sends it on every request (model description and tagging); a wrong key is asked
    for again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    key = "page-key-42"
    pkg = make_package(tmp_path / "pkg", frames=64, hop=64, thresholds=[0.5] * len(TAGS))
    server = Server(pkg, tmp_path / "serve.log", "--max-concurrency", "1", "--api-key", key)
    clip = tmp_path / "tone.wav"
    clip.write_bytes(wav_bytes(8.0))
    try:
        server.wait()
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 120)
        form = browser.find_element(By.ID, "key-form")
        wait.until(lambda d: form.is_displayed())
        assert "needs an API key" in browser.find_element(By.ID, "key-message").text
        assert "simplecnn" not in browser.find_element(By.ID, "model").text  # nothing asked without the key

        browser.find_element(By.ID, "api-key").send_keys("wrong-key")
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(lambda d: form.is_displayed() and "did not accept" in d.find_element(By.ID, "key-message").text)
        assert browser.execute_script("return sessionStorage.getItem('musetag.apiKey')") is None

        browser.find_element(By.ID, "api-key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "simplecnn"))  # /v1/models and /v1/tags
        assert not form.is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('musetag.apiKey')") == key
        browser.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar"))  # POST /v1/tag with the key
        assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar")) == len(TAGS)
        # a reload in the same tab keeps the key: no question, the model is described at once
        browser.refresh()
        wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "simplecnn"))
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        # a key the server no longer accepts (changed on the server): the status says so, not "needs a key"
        browser.execute_script("sessionStorage.setItem('musetag.apiKey', 'old-key')")
        browser.find_element(By.ID, "file").send_keys(str(clip))
        status = browser.find_element(By.ID, "status")
        wait.until(lambda d: "Could not tag" in status.text)
        assert "did not accept the API key" in status.text
        assert browser.find_element(By.ID, "key-form").is_displayed()
    finally:
        server.stop()


def test_the_page_shows_the_latest_file_and_its_warnings(page, browser, tmp_path):
    """Choosing a second file while the first was still being tagged showed the second file's name over the
    first one's tags when the first answer came last; and a silent or too-short upload got normal-looking bars
    without the response's warnings."""
    import time

    import numpy as np
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from test_serve import wav_bytes

    _, wait = page
    long = tmp_path / "long.wav"
    long.write_bytes(wav_bytes(400.0, sr=16000))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * 16000, dtype=np.float32), 16000)
    status = lambda d: d.find_element(By.ID, "status").text  # noqa: E731
    browser.find_element(By.ID, "file").send_keys(str(long))
    browser.find_element(By.ID, "file").send_keys(str(silent))  # before the long file's answer
    wait.until(lambda d: "silent.wav:" in status(d))
    time.sleep(3)  # the long file's answer, if any, has come and gone
    assert "silent.wav:" in status(browser) and "long.wav" not in status(browser)
    assert browser.find_element(By.ID, "filename").text == "silent.wav"
    assert "Warning: silent" in status(browser)
    assert "error" in (browser.find_element(By.ID, "status").get_attribute("class") or "")  # shown, not bare
    # a 3 s file's time axis: five distinct marks in seconds (as m:ss it read 0:00, 0:00, 0:01, 0:02, 0:03)
    marks = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "#timeline + .axis span")]
    assert marks == ["0.0 s", "0.8 s", "1.5 s", "2.3 s", "3.0 s"]
