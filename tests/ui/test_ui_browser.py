"""The page in a real browser (headless Debian chromium via selenium), on the tiny person: type a
sentence, generate, wait for the video element, download the mp4 and its side-car and check them;
an empty text shows the CLI's one-line error; the page fetches nothing from outside localhost."""
import json
import time

import numpy as np
import pytest

from tests.ui import browser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    browser.need_browser()
    with browser.session(tmp_path_factory.mktemp("ui-browser")) as opened:
        yield opened


def wait(driver, condition, timeout_s=120):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)


def status(driver, elem_id="say-status"):
    found = driver.find_elements("css selector", f"#{elem_id}")    # "" while (re)drawn
    return found[0].text.strip() if found else ""


def test_say_in_the_browser(page):
    from avatar.video.check import check_media, read_tags
    from avatar.video.reader import VideoReader
    from avatar.video.writer import watermark_box
    driver, url, downloads, home = page
    browser.pick(driver, "say-person", "tiny")
    text = driver.find_element("css selector", "#say-text textarea")
    text.send_keys("Hello there, this is a test.")
    t0 = time.monotonic()
    driver.find_element("css selector", "#say-generate").click()
    wait(driver, lambda d: status(d).startswith(("done:", "error:")))
    assert status(driver).startswith("done: tiny-"), status(driver)
    video = wait(driver, lambda d: d.find_elements("css selector", "#say-video video"))[0]
    assert video.get_attribute("src").startswith(url)
    ready = wait(driver, lambda d: d.execute_script(
        "const v = document.querySelector('#say-video video');"
        "return v.readyState >= 1 ? [v.duration, v.videoWidth, v.videoHeight] : null;"), 30)
    assert ready[1:] == [128, 96] and 1.0 < ready[0] < 5.0     # the browser decodes it
    names = {}
    for link in driver.find_elements("css selector", "#say-files a[download]"):
        names[link.get_attribute("download").rsplit(".", 1)[-1]] = link.get_attribute("download")
        link.click()
    assert set(names) == {"mp4", "json"}
    stages = wait(driver, lambda d: status(d, "say-bars"), 10)
    for stage in ("tts", "expressions", "render", "write"):    # SayPipeline's events
        assert stage in stages, stages
    mp4 = browser.wait_for_file(downloads / names["mp4"])
    sidecar = json.loads(browser.wait_for_file(downloads / names["json"]).read_text())
    print(f"generate -> downloaded in {time.monotonic() - t0:.1f} s")

    check = check_media(mp4, 16000)
    assert check.errors == "" and check.n_frames == round(check.audio_s * 10.0)
    assert 1.0 < check.audio_s < 5.0 and check.audio_samples > 0
    frames = VideoReader(mp4).read_all()
    assert frames.shape[1:] == (96, 128, 3)
    x0, y0, x1, y1 = watermark_box(128, 96)
    label = frames[:, y0:y1, x0:x1]
    assert label.max() > 200 and np.median(label) < 60          # white text on a dark box
    assert read_tags(mp4)["synthetic"] == "true"
    assert sidecar["synthetic"] is True and sidecar["command"] == "say"
    assert sidecar["input"]["text"] == "Hello there, this is a test."
    assert sidecar["person"]["name"] == "tiny" and sidecar["person"]["consent"]["statement"]
    assert sidecar["output"]["watermark"] is True and sidecar["output"]["frames"] == check.n_frames
    made = list((home / "ui" / "requests").glob("*-say-*/tiny-*.mp4"))
    assert len(made) == 1 and made[0].name == names["mp4"]      # in its own request folder


def test_empty_text_shows_the_cli_error(page):
    driver = page[0]
    from selenium.webdriver.common.keys import Keys
    text = driver.find_element("css selector", "#say-text textarea")
    text.send_keys(Keys.CONTROL, "a")
    text.send_keys(Keys.DELETE)                # as a person does (clear() fires no input event)
    driver.find_element("css selector", "#say-generate").click()
    wait(driver, lambda d: status(d).startswith("error:"), 60)
    assert status(driver) == "error: the text to speak is empty; give at least one word"
    assert "Traceback" not in driver.page_source


def test_page_fetches_nothing_from_outside(page):
    driver, url = page[0], page[1]
    outside = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith(arguments[0]) && !n.startsWith('data:') && !n.startsWith('blob:'))",
        url.rstrip("/"))
    assert outside == []


def test_batch_tab_in_the_browser(page, tmp_path):
    import zipfile
    driver, downloads = page[0], page[2]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "b1", "text": "Hello.", "person": "tiny"}\n'
                    '{"id": "b2", "text": "Bye.", "person": "tiny", "head_motion": "still"}\n')
    browser.open_tab(driver, "Batch")
    browser.upload(driver, "batch-jobs", jobs)
    driver.find_element("css selector", "#batch-start").click()
    wait(driver, lambda d: "done; 2 of 2 done" in status(d, "batch-status")
         or status(d, "batch-status").startswith("error:"), 180)
    assert status(driver, "batch-status").endswith("done; 2 of 2 done, 0 failed")
    table = driver.find_element("css selector", "#batch-table").text.split()
    assert table.count("done") == 2 and "b1" in table and "b2" in table
    link = wait(driver, lambda d: d.find_elements("css selector", "#batch-zip a[download]"), 30)[0]
    link.click()
    with zipfile.ZipFile(browser.wait_for_file(downloads / link.get_attribute("download"))) as z:
        assert sorted(z.namelist()) == ["b1.json", "b1.mp4", "b2.json", "b2.mp4", "status.jsonl"]


def test_fit_tab_in_the_browser(page, face_video):
    from selenium.webdriver.common.keys import Keys
    driver = page[0]
    browser.open_tab(driver, "Fit a person")
    browser.upload(driver, "fit-clips", face_video)
    driver.find_element("css selector", "#fit-name input, #fit-name textarea").send_keys("astro")
    driver.find_element("css selector", "#fit-consent textarea").send_keys("synthetic test")
    minutes = driver.find_element("css selector", "#fit-minutes input")
    minutes.send_keys(Keys.CONTROL, "a")
    minutes.send_keys("0")                              # tracking and face model only
    driver.find_element("css selector", "#fit-start").click()
    wait(driver, lambda d: status(d, "fit-status").startswith(("fit of astro: finished", "error:",
                                                               "fit of astro: failed")), 180)
    assert status(driver, "fit-status") == "fit of astro: finished"
    sheet = wait(driver, lambda d: d.find_elements("css selector", "#fit-sheet img"), 30)[0]
    assert sheet.get_attribute("src") and driver.execute_script(
        "return arguments[0].naturalWidth", sheet) > 100
    assert wait(driver, lambda d: d.find_elements("css selector", "#fit-overlay video"), 30)
    assert "person folder:" in driver.find_element("css selector", "#fit-log textarea").get_attribute("value")
    driver.refresh()                                    # a page opened later is back on the fit
    wait(driver, lambda d: d.find_elements("css selector", "button[role='tab']"), 60)
    browser.open_tab(driver, "Fit a person")
    wait(driver, lambda d: status(d, "fit-status") == "fit of astro: finished", 30)
