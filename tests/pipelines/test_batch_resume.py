"""batch: SIGKILL half way, run again -> every clip valid, none redone; failures isolated."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avatar.video.check import check_media
from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    make_tiny_person(root / "ckpt" / "persons" / "tiny")
    make_tiny_audio2expr(root / "a2e")
    return root


def _wav(path, seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32), sr)


def _jobs(folder, n, bad_audio=()):
    lines = []
    for i in range(n):
        job = {"id": f"j{i:02d}", "person": "tiny"}
        if i in bad_audio:
            (folder / f"bad{i}.wav").write_bytes(b"this is not audio at all" * 10)
            job["audio"] = f"bad{i}.wav"
        elif i % 3 == 0:
            job["text"] = f"Clip number {i}."
        else:
            _wav(folder / f"a{i}.wav", 0.6 + 0.1 * (i % 4))
            job["audio"] = f"a{i}.wav"
            job["seed"] = i
        lines.append(json.dumps(job))
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _batch(setup, jobs, out, workers=2):
    env = {**os.environ, "AVATAR_CHECKPOINTS": str(setup / "ckpt"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "cli.py"), "batch", str(jobs), "--out", str(out),
           "--workers", str(workers), "--audio2expr", str(setup / "a2e"), "--quiet"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _done_lines(out):
    path = out / "status.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return [r["id"] for r in records if r.get("status") == "done"]


def _group_gone(pgid, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_sigkill_then_resume_with_one_failing_job(setup, tmp_path):
    n, bad = 7, 5
    jobs, out = _jobs(tmp_path, n, bad_audio=(bad,)), tmp_path / "out"
    good = [f"j{i:02d}" for i in range(n) if i != bad]
    proc = _batch(setup, jobs, out)
    deadline = time.time() + 240
    while len(_done_lines(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)                       # only the batch process itself
    proc.wait()
    assert _group_gone(proc.pid), "workers outlived the killed batch process"
    finished = {i: (out / f"{i}.mp4").stat() for i in _done_lines(out)}
    assert 2 <= len(finished) < n - 1

    proc = _batch(setup, jobs, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr                     # the bad job failed ...
    assert f"failed j{bad:02d}" in stdout and "not an audio or video file" in stdout
    assert not (out / f"j{bad:02d}.mp4").exists()
    done = _done_lines(out)
    assert sorted(done) == good                             # ... and stopped no other job
    assert len(done) == len(set(done))                      # no job recorded (run) twice
    for job_id, st in finished.items():                      # finished ones were not redone
        again = (out / f"{job_id}.mp4").stat()
        assert (again.st_ino, again.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert f"{len(finished)} already finished" in stdout
    for job_id in good:
        check = check_media(out / f"{job_id}.mp4", 16000)
        assert check.errors == ""
        assert check.n_frames == round(check.audio_s * 10.0)
        assert check.audio_samples == round(check.n_frames * 1600)
        meta = json.loads((out / f"{job_id}.json").read_text())
        assert meta["input"]["batch_job"]["id"] == job_id and meta["synthetic"] is True
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".batch.lock"]
    assert leftovers == []
