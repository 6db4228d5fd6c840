"""batch --engine ray on a local Ray started here (2 CPUs, loopback): the local engine's
guarantees (bad lines first, failures isolated, finished jobs skipped), a killed worker's job
retried and recorded once, no half-written clip or work folder left in --out."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from avatar.video.check import check_media
from tests.pipelines.test_batch_resume import _wav, setup  # noqa: F401 (setup: a fixture)

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(setup):
    """The tiny person (`setup`), and a Ray instance whose workers see it (env set before ray.init)."""
    root = setup
    with pytest.MonkeyPatch.context() as mp:
        for name, value in [("AVATAR_CHECKPOINTS", root / "ckpt"), ("AVATAR_HOME", root / "home"),
                            ("AVATAR_CACHE", root / "cache"), ("OMP_NUM_THREADS", "1"),
                            ("RAY_USAGE_STATS_ENABLED", "0")]:
            mp.setenv(name, str(value))
        from avatar.io import person as person_io      # the driver's shipped persons (read at import)
        mp.setattr(person_io, "PERSONS_ROOT", root / "ckpt" / "persons")
        ray.init(address="local", num_cpus=2, include_dashboard=False,   # never a cluster found
                 object_store_memory=100 * 2**20)                       # by ray_current_cluster
        try:
            yield root
        finally:
            ray.shutdown()


def _write_jobs(folder, specs):
    lines = []
    for i, spec in enumerate(specs):
        if spec == "text":
            job = {"id": f"r{i}", "text": f"Clip number {i}."}
        elif spec == "broken":
            (folder / f"bad{i}.wav").write_bytes(b"not audio" * 20)
            job = {"id": f"r{i}", "audio": f"bad{i}.wav"}
        elif spec == "bad line":
            lines.append('{"id": "oops", "text": "Hi", "person": "tiny", "sped": 2}')
            continue
        else:                                       # audio of `spec` seconds
            _wav(folder / f"a{i}.wav", spec)
            job = {"id": f"r{i}", "audio": f"a{i}.wav", "seed": i}
        lines.append(json.dumps({**job, "person": "tiny"}))
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(cluster, jobs, out, *extra):
    import cli
    return cli.main(["batch", str(jobs), "--out", str(out), "--workers", "2", "--quiet",
                     "--audio2expr", str(cluster / "a2e"), "--engine", "ray", *extra])


def _records(out):
    return [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]


def _check_clips(out, ids):
    for job_id in ids:
        check = check_media(out / f"{job_id}.mp4", 16000)
        assert check.errors == "" and check.n_frames == round(check.audio_s * 10.0)
        assert json.loads((out / f"{job_id}.json").read_text())["synthetic"] is True
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".batch.lock"]
    assert hidden == []                              # no temp file, no .ray-work folder


def _check_loaded_once(records):
    """Each worker process loaded the person at most once (models_loaded: 1 on its first job)."""
    loads = {}
    for r in records:
        loads[r["worker"]] = loads.get(r["worker"], 0) + r["models_loaded"]
    assert set(loads.values()) <= {0, 1} and sum(r["status"] == "done" for r in records) > len(loads)


def test_six_jobs_bad_line_first_one_failing(cluster, tmp_path, capsys):
    specs = ["text", 0.6, "bad line", 0.8, "broken", "text", 0.7]
    out = tmp_path / "out"
    assert _cli(cluster, _write_jobs(tmp_path, specs), out) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("line 3: unknown option(s) 'sped'") and len(err) == 2
    assert "1 of 7 job lines" in err[1] and "nothing was started" in err[1]
    assert not (out / "status.jsonl").exists()

    jobs = _write_jobs(tmp_path, [s for s in specs if s != "bad line"])      # 6 jobs, r3 broken
    assert _cli(cluster, jobs, out) == 1
    stdout = capsys.readouterr().out
    assert "5 done, 0 already finished" in stdout and "1 failed" in stdout
    assert "failed r3:" in stdout and "not an audio or video file" in stdout
    records = _records(out)
    done = [r["id"] for r in records if r["status"] == "done"]
    assert sorted(done) == ["r0", "r1", "r2", "r4", "r5"] and len(records) == 6
    _check_clips(out, done)
    _check_loaded_once(records)

    before = {i: (out / f"{i}.mp4").stat().st_mtime_ns for i in done}
    assert _cli(cluster, jobs, out) == 1             # re-run: only the failed job runs again
    assert "0 done, 5 already finished (skipped)" in capsys.readouterr().out
    assert {i: (out / f"{i}.mp4").stat().st_mtime_ns for i in done} == before
    assert len(_records(out)) == 7


def _kill_when_rendering(work: Path, job_id: str, thread, timeout=120.0) -> str:
    """SIGKILL the worker process whose folder holds `job_id`'s unfinished mp4."""
    end = time.time() + timeout
    while time.time() < end and thread.is_alive():
        for temp in work.glob(f"*/.{job_id}.mp4.*.tmp.mp4"):
            worker = temp.parent.name
            os.kill(int(worker.rsplit("-", 1)[1]), signal.SIGKILL)
            return worker
        time.sleep(0.02)
    raise AssertionError(f"{job_id} was never seen rendering")


def test_killed_worker_job_retried_and_recorded_once(cluster, tmp_path):
    from pipelines.ray_engine import ray_pool
    from pipelines.runner import parse_jobs, run_batch
    jobs = parse_jobs(_write_jobs(tmp_path, [0.6, 12.0, 0.7, 0.8]))           # r1: 120 frames
    out, result = tmp_path / "out", {}
    thread = threading.Thread(target=lambda: result.update(summary=run_batch(
        jobs, out, workers=2, progress=False, audio2expr=str(cluster / "a2e"), pool=ray_pool())))
    thread.start()
    killed = _kill_when_rendering(out / ".ray-work", "r1", thread)
    thread.join(timeout=900)            # generous: on two shared, loaded cores it took > 180 s
    assert not thread.is_alive(), "the batch did not finish within 15 min of the kill"
    summary = result["summary"]
    assert sorted(summary.done) == ["r0", "r1", "r2", "r3"] and not summary.failed
    records = _records(out)
    assert sorted(r["id"] for r in records) == ["r0", "r1", "r2", "r3"]     # each once
    retried = next(r for r in records if r["id"] == "r1")
    assert retried["worker"] != killed                                       # ran again elsewhere
    _check_loaded_once(records)
    _check_clips(out, summary.done)


def _python(*args):
    """python in a fresh process, with the shipped demo person (whether or not `cluster` runs)."""
    env = {k: v for k, v in os.environ.items() if k != "AVATAR_CHECKPOINTS"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)


def _run_cli(*args):
    return _python(str(REPO / "cli.py"), *args)


def test_address_mistakes_are_one_line(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "text": "Hi", "person": "demo"}\n')
    bad = _run_cli("batch", str(jobs), "--out", str(tmp_path / "o"), "--engine", "ray",
                   "--address", "http://head")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --address 'http://head' is not a")
    local = _run_cli("batch", str(jobs), "--out", str(tmp_path / "o"), "--address", "auto")
    assert local.returncode == 2 and "goes with --engine ray" in local.stderr
    gone = _run_cli("batch", str(jobs), "--out", str(tmp_path / "o"), "--engine", "ray",
                    "--address", "127.0.0.1:9")                   # nothing listens there
    assert gone.returncode == 2 and "cannot reach the Ray head at 127.0.0.1:9" in gone.stderr
    for r in (bad, local, gone):
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "status.jsonl").exists()


def test_local_engine_never_imports_ray(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "text": "Hi", "person": "demo"}\n')
    code = ("import sys, cli; rc = cli.main(['batch', sys.argv[1], '--out', sys.argv[2], "
            "'--check']); print(rc, 'ray' in sys.modules)")
    r = _python("-c", code, str(jobs), str(tmp_path / "o"))
    assert r.stdout.split()[-2:] == ["0", "False"], r.stderr
