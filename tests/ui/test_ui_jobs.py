"""The page's background jobs without a browser: progress read from the CLI's own bars, a fit of
a real face video (tracking + face model) that the page finds again by name, a batch run to a zip,
and the refusals (consent, names, files outside the upload, watermark)."""
import io
import json
import os
import time
import zipfile

import pytest
from tqdm import tqdm

from avatar.errors import AvatarError
from pipelines import ui_background, ui_batch, ui_fit
from pipelines.ui_say import ServerOptions


def wait_until_finished(folder, timeout_s=240):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        state = ui_background.state(folder)
        if state.status != "running":
            return state
        time.sleep(0.5)
    raise AssertionError(f"job in {folder} still running after {timeout_s} s:\n"
                         f"{ui_background.log_tail(folder / ui_background.LOG)[-3000:]}")


def test_progress_is_read_from_the_cli_bars():
    out = io.StringIO()
    bar = tqdm(total=1, desc="tts", file=out, bar_format="{desc}: {percentage:3.0f}% [{elapsed}]")
    bar.update(1)
    bar.close()
    track = tqdm(total=240, desc="tracking", unit="frame", file=out)
    track.update(120)
    track.refresh()
    budget = tqdm(total=None, desc="training renderer", unit="step", file=out)
    budget.update(66)
    budget.refresh()
    text = out.getvalue() + "\nerror: the clip is too short\n"
    assert ui_background.progress_bars(text) == {"tts": (100, 100), "tracking": (120, 240),
                                                 "training renderer": (66, 0)}
    assert ui_background.last_error(text) == "error: the clip is too short"
    cut = "\rtracking a.mp4:   0%|   | 0/24 [00:00<?, ?frame/s]interrupted: work is kept\n\rtracking"
    assert ui_background.last_error(cut) == "interrupted: work is kept"
    assert ui_background.last_error("held-out landmark error 0.2 px\nno error: here\n") == ""
    assert ui_background.screen_lines("a\rb\rc\nd\n", 5) == "c\nd"


def test_a_failing_job_shows_the_cli_error(tmp_path):
    folder = tmp_path / "job"
    ui_background.start(folder, ["train-person", "--video", str(tmp_path / "none.mp4"),
                                 "--name", "x", "--consent", "test"])
    state = wait_until_finished(folder, 120)
    assert state.status == "failed"
    assert state.error == f"error: video file {tmp_path / 'none.mp4'} does not exist"
    assert "Traceback" not in state.log_tail


def test_fit_runs_in_the_background_and_is_found_by_name(face_video, tmp_path, monkeypatch):
    from avatar.io import person as person_io
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))   # tracked afresh: its bar shows
    folder = ui_fit.start_fit([str(face_video)], "astro", "synthetic test: scikit-image's "
                              "astronaut photo, public domain", 0, device="cpu")
    pid = json.loads((folder / ui_background.JOB).read_text())["pid"]
    assert os.getsid(pid) != os.getsid(0)            # its own session: closing the page or
    with pytest.raises(AvatarError, match="already running"):     # the server leaves it be
        ui_fit.start_fit([str(face_video)], "astro", "again", 0)
    assert ui_fit.fit_names()[0] == "astro"
    state = wait_until_finished(folder)
    assert state.status == "done", state.log_tail[-2000:]
    view = ui_fit.fit_view("astro")                  # what a newly opened page shows
    assert view.headline() == "fit of astro: finished"
    assert view.contact_sheet and view.contact_sheet.parent == person_io.user_persons_root() / "astro"
    assert view.overlay and view.overlay.stat().st_size > 0 and view.curve is None
    config = person_io.read_config(view.contact_sheet.parent)
    assert config["consent"]["statement"].startswith("synthetic test") and config["status"] == "tracked"
    assert any(name.startswith("track") for name in view.state.bars), view.state.bars


@pytest.mark.parametrize("name, consent, minutes, message", [
    ("../x", "ok", 0, "not allowed"), ("alice", "  ", 0, "--consent is required"),
    ("alice", "ok", -1, "out of range"), ("alice", "ok", "soon", "not a number")])
def test_fit_refuses_bad_requests_before_starting(face_video, name, consent, minutes, message):
    with pytest.raises(AvatarError, match=message):
        ui_fit.start_fit([str(face_video)], name, consent, minutes)
    assert "alice" not in ui_fit.fit_names()


def test_fit_checks_clips_like_train_person(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all" * 10)
    with pytest.raises(AvatarError):
        ui_fit.start_fit([str(fake)], "bob", "ok", 0)
    assert not (ui_fit.fits_root() / ".bob.incoming").exists() and "bob" not in ui_fit.fit_names()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person
    root = tmp_path_factory.mktemp("ui-batch")
    home = tmp_path_factory.getbasetemp() / "avatar-home"
    make_tiny_person(home / "persons" / "tinyb")
    return ServerOptions(device="cpu", audio2expr=str(make_tiny_audio2expr(root / "a2e")))


def jobs_file(tmp_path, lines):
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


def test_batch_runs_to_a_zip(tmp_path, tiny_models):
    path = jobs_file(tmp_path, [{"id": "one", "text": "Hello there."},
                                {"id": "two", "text": "Good bye.", "head_motion": "still"}])
    request = ui_batch.start_batch(str(path), None, "tinyb", False, tiny_models)
    assert ui_batch.batch_requests()[0] == request
    state = wait_until_finished(ui_batch.ui_files.request_folder(request) / "job")
    assert state.status == "done", state.log_tail[-2000:]
    view = ui_batch.batch_view(request)
    assert [r[:2] for r in view.rows] == [["one", "done"], ["two", "done"]]
    assert view.headline().endswith("done; 2 of 2 done, 0 failed")
    with zipfile.ZipFile(view.zip_path) as z:
        assert sorted(z.namelist()) == ["one.json", "one.mp4", "status.jsonl", "two.json", "two.mp4"]
        meta = json.loads(z.read("two.json"))
    assert meta["synthetic"] is True and meta["settings"]["head_motion"] == "still"


def test_batch_refuses_before_starting(tmp_path, tiny_models):
    from pipelines.runner import JobsFileError
    before = ui_batch.batch_requests()
    outside = jobs_file(tmp_path, [{"id": "a", "audio": "../../etc/passwd"}])
    with pytest.raises(AvatarError, match="line 1: audio '../../etc/passwd' is outside"):
        ui_batch.start_batch(str(outside), None, "tinyb", False, tiny_models)
    unmarked = jobs_file(tmp_path, [{"id": "a", "text": "Hi", "watermark": False}])
    with pytest.raises(AvatarError, match="ask for no visible SYNTHETIC label"):
        ui_batch.start_batch(str(unmarked), None, "tinyb", False, tiny_models)
    bad = jobs_file(tmp_path, ['{"id": "a", "text": "ok"}', '{"id": "b"', '{"id": "c", "fps": 1000, "text": "x"}'])
    with pytest.raises(JobsFileError) as e:
        ui_batch.start_batch(str(bad), None, "tinyb", False, tiny_models)
    assert [line.split(":")[0] for line in e.value.lines] == ["line 2", "line 3"]
    with pytest.raises(AvatarError, match="not one of the persons"):
        ui_batch.start_batch(str(bad), None, "/etc", False, tiny_models)
    assert ui_batch.batch_requests() == before
    assert len(list((ui_batch.ui_files.ui_root() / "requests").glob("*-batch-*"))) == len(before)


def test_a_fit_can_be_stopped_and_says_how_to_resume(face_video):
    folder = ui_fit.start_fit([str(face_video)], "astro-stop", "synthetic test", 5, device="cpu")
    t_end = time.monotonic() + 120
    while not ui_background.progress_bars(ui_background.log_tail(folder / ui_background.LOG)):
        assert time.monotonic() < t_end and ui_background.state(folder).status == "running"
        time.sleep(0.2)
    assert ui_fit.stop_fit("astro-stop")
    state = wait_until_finished(folder, 60)
    assert state.status == "stopped" and state.error.startswith("interrupted: "), state.log_tail
    assert ui_fit.fit_view("astro-stop").headline().startswith("fit of astro-stop: stopped (start it")
    assert not ui_fit.stop_fit("astro-stop")


def test_log_tail_starts_at_a_whole_line(tmp_path):
    log = tmp_path / "log.txt"
    log.write_bytes(b"x" * 50 + b"\rtraining renderer:  10%|#| 10/100\rtraining renderer:  20%|#| 20/100")
    tail = ui_background.log_tail(log, limit=70)
    assert tail.startswith("training renderer:") and tail.endswith("20/100")
    assert ui_background.progress_bars(tail) == {"training renderer": (20, 100)}
    assert ui_background.log_tail(tmp_path / "none.txt") == ""
