"""Screenshots of the page's three tabs, each in use, for docs/ui/ (not a test; run by hand):

    python -m tests.ui.screenshots docs/ui

Say: the shipped demo person saying a sentence (shipped audio2expr). Fit a person: scikit-image's
astronaut photo (drifting, 2.4 s) uploaded and fitted for a minute, while it trains. Batch: two
jobs of the tiny synthetic person, finished, with the zip. Everything runs in a temp $AVATAR_HOME.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.ui import browser


def full_page(driver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(900, height + 40), 4000))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def wait_text(driver, elem_id: str, prefixes: tuple, timeout_s: float = 600) -> str:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        text = driver.find_element("css selector", f"#{elem_id}").text.strip()
        if text.startswith(prefixes):
            return text
        time.sleep(0.5)
    raise TimeoutError(f"#{elem_id} did not show {prefixes} in {timeout_s:.0f} s")


def say_tab(driver, out: Path) -> None:
    browser.open_tab(driver, "Say")
    browser.pick(driver, "say-person", "demo")
    driver.find_element("css selector", "#say-text textarea").send_keys(
        "Hello. This video was made offline, and it says so.")
    driver.find_element("css selector", "#say-generate").click()
    print(wait_text(driver, "say-status", ("done:", "error:")))
    time.sleep(2)
    full_page(driver, out / "say.png")


def fit_tab(driver, out: Path, work: Path) -> None:
    from tests.conftest import astronaut_face_frames, write_video
    clip = write_video(work / "astronaut.mp4", astronaut_face_frames(24))
    browser.open_tab(driver, "Fit a person")
    browser.upload(driver, "fit-clips", clip)
    driver.find_element("css selector", "#fit-name textarea, #fit-name input").send_keys("astronaut")
    driver.find_element("css selector", "#fit-consent textarea").send_keys(
        "scikit-image's astronaut photo (public domain, NASA); a test of the page, no real consent needed")
    minutes = driver.find_element("css selector", "#fit-minutes input")
    minutes.clear()
    minutes.send_keys("1")
    driver.find_element("css selector", "#fit-start").click()
    print(wait_text(driver, "fit-status", ("fit of astronaut", "error:"), 60))
    t_end = time.monotonic() + 240
    while time.monotonic() < t_end and "training renderer" not in \
            driver.find_element("css selector", "#fit-bars").text:
        time.sleep(1)
    t_end = time.monotonic() + 300                   # the first checkpoint draws the curve
    while time.monotonic() < t_end and not driver.find_elements("css selector", "#fit-curve img"):
        time.sleep(1)
    time.sleep(3)
    full_page(driver, out / "fit.png")
    driver.find_element("css selector", "#fit-stop").click()
    print(wait_text(driver, "fit-status", ("fit of astronaut: stopped", "fit of astronaut: finished"), 120))


def batch_tab(driver, out: Path, work: Path) -> None:
    jobs = work / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in (
        {"id": "hello", "text": "Hello there.", "person": "tiny"},
        {"id": "still", "text": "Holding still.", "person": "tiny", "head_motion": "still"},
        {"id": "bye", "text": "Good bye.", "person": "tiny", "expression_scale": 1.5})) + "\n")
    browser.open_tab(driver, "Batch")
    browser.upload(driver, "batch-jobs", jobs)
    driver.find_element("css selector", "#batch-start").click()
    print(wait_text(driver, "batch-status", ("batch ", "error:"), 60))
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end and not driver.find_elements("css selector", "#batch-zip a"):
        time.sleep(1)
    full_page(driver, out / "batch.png")


def main(out: str) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avatar-ui-shots-") as tmp:
        work = Path(tmp)
        os.environ["AVATAR_CACHE"] = str(work / "cache")       # track afresh: its bar shows
        with browser.session(work, tiny_audio2expr=False) as (driver, _, _, _):
            time.sleep(2)
            say_tab(driver, out_dir)
            batch_tab(driver, out_dir, work)
            fit_tab(driver, out_dir, work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/ui"))
