"""Regenerate docs/img/page-timeline.png: the web page with a real pretrained model and a real song.

    MUSETAG_MODEL_MIRROR=../shared/models python docs/make_screenshot.py SONG.mp3 [--models mtg-jamendo-baseline jamendo-fcn]

Starts ``musetag serve`` on a free port (by default the baseline over the whole song first, so the timeline
has a point every 29.1 s excerpt, beside the centred-excerpt baseline and Won et al.'s FCN), uploads SONG in headless Chromium (Debian's ``chromium`` and
``chromium-driver``), moves the player to 40 % of the song and saves the visible page. The song itself
is not committed; only our own rendering of the page is.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("song")
    ap.add_argument("--models", nargs="+", default=["mtg-jamendo-baseline-whole", "mtg-jamendo-baseline", "jamendo-fcn"])
    ap.add_argument("--out", default=str(Path(__file__).with_name("img") / "page-timeline.png"))
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "musetag", "serve", *args.models, "--port", str(port),
                             "--max-concurrency", "1", "--log-level", "warning"], start_new_session=True)
    profile = tempfile.mkdtemp(prefix="musetag-shot-")
    driver = None
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("musetag serve exited")
            time.sleep(0.5)
        opts = webdriver.ChromeOptions()
        opts.binary_location = next(p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p))
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--hide-scrollbars",
                  "--window-size=1000,860", f"--user-data-dir={profile}"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        driver.get(url + "/")
        wait = WebDriverWait(driver, 300)
        wait.until(lambda d: "tags" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(Path(args.song).resolve()))
        wait.until(lambda d: d.find_elements(By.ID, "timeline"))
        wait.until(lambda d: d.execute_script("return document.getElementById('audio').readyState") >= 1)
        box = driver.find_element(By.ID, "timeline")
        ActionChains(driver).move_to_element_with_offset(box, int(box.size["width"] * -0.1), 0).click().perform()
        time.sleep(1.0)  # the bars' transition
        driver.execute_script("document.getElementById('player').scrollIntoView()")
        driver.save_screenshot(args.out)
        try:  # a palette PNG: a quarter of the size, the same picture to the eye
            from PIL import Image

            Image.open(args.out).convert("RGB").quantize(colors=128).save(args.out, optimize=True)
        except ImportError:
            pass
        print(args.out)
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
