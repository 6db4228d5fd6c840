"""Helpers for the browser tests and the screenshots: the `ui` command on a free localhost port,
with the tiny synthetic person, driven by Debian's chromium through selenium.

    home = make_home(tmp)                     # $AVATAR_HOME with persons/tiny, and a tiny audio2expr
    with served(home) as url, chromium(downloads) as driver: ...

Without gradio, selenium, chromium or chromedriver the browser tests are skipped, unless
AVATAR_UI_TESTS=required (CI), where that is a failure.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e \".[ui]\")"
    if not any(Path(p).is_file() for p in CHROMIUM) or not Path(CHROMEDRIVER).is_file():
        return "chromium / chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
    return None


def need_browser() -> None:
    reason = missing_browser()
    if reason and os.environ.get("AVATAR_UI_TESTS") == "required":
        pytest.fail(f"AVATAR_UI_TESTS=required but {reason}")
    if reason:
        pytest.skip(reason)


def make_home(root: Path) -> tuple[Path, Path]:
    """($AVATAR_HOME holding persons/tiny, a tiny audio2expr checkpoint folder)."""
    from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person
    home = root / "home"
    make_tiny_person(home / "persons" / "tiny")
    return home, make_tiny_audio2expr(root / "a2e")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(home: Path, a2e: Path | None, log: Path, timeout_s: float = 120.0):
    """`python cli.py ui` on a free port (a2e None: the shipped audio2expr); yields its URL,
    stops it afterwards."""
    port = free_port()
    env = {**os.environ, "AVATAR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        argv = [sys.executable, str(REPO / "cli.py"), "ui", "--port", str(port), "--device", "cpu"]
        proc = subprocess.Popen(argv + (["--audio2expr", str(a2e)] if a2e else []), cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_page(url, proc, timeout_s, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_page(url: str, proc, timeout_s: float, log: Path) -> None:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"the ui command exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the page did not come up in {timeout_s:.0f} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def chromium(downloads: Path, width: int = 1400, height: int = 1500):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = next(p for p in CHROMIUM if Path(p).is_file())
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def session(root: Path, tiny_audio2expr: bool = True):
    """The page served from a new $AVATAR_HOME under `root` (the tiny person in it), open in
    chromium: yields (driver, url, downloads folder, home)."""
    from selenium.webdriver.support.ui import WebDriverWait
    home, a2e = make_home(root)
    (root / "downloads").mkdir()
    with served(home, a2e if tiny_audio2expr else None, root / "server.log") as url, \
            chromium(root / "downloads") as driver:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements("css selector", "#say-text textarea"))
        yield driver, url, root / "downloads", home


def upload(driver, elem_id: str, path: Path, timeout_s: float = 30.0) -> None:
    """Put a file into a Gradio file/upload component and wait until it lists it."""
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(driver, timeout_s, poll_frequency=0.2)
    picker = wait.until(lambda d: d.find_elements("css selector", f"#{elem_id} input[type=file]"))
    picker[0].send_keys(str(path))
    wait.until(lambda d: path.suffix in d.find_element("css selector", f"#{elem_id}").text)


def wait_for_file(path: Path, timeout_s: float = 30.0) -> Path:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if path.is_file() and path.stat().st_size > 0 and \
                not path.with_name(path.name + ".crdownload").exists():
            return path
        time.sleep(0.2)
    raise AssertionError(f"{path.name} was not downloaded in {timeout_s:.0f} s")


def pick(driver, elem_id: str, value: str, timeout_s: float = 30.0) -> None:
    """Choose `value` in a Gradio dropdown (waiting while the page load redraws it)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.keys import Keys
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        try:
            box = driver.find_elements("css selector", f"#{elem_id} input")
            if box:
                box[0].click()
                box[0].send_keys(Keys.CONTROL, "a")
                box[0].send_keys(value)
                box[0].send_keys(Keys.ENTER)
                time.sleep(0.3)
                if driver.find_element("css selector", f"#{elem_id} input").get_attribute("value") == value:
                    return
        except StaleElementReferenceException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"could not choose {value!r} in #{elem_id}")


def open_tab(driver, title: str) -> None:
    buttons = [b for b in driver.find_elements("css selector", "button[role='tab']")
               if b.text.strip() == title]
    assert buttons, f"no tab {title!r}"
    buttons[0].click()
