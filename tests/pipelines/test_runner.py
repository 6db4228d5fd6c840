"""pipelines/runner.py step by step, in one process (as a second engine would call it): a job is
made by run_job, recorded by record_result, then skipped, recovered or redone by plan_batch."""
from __future__ import annotations

import json

import pytest

from pipelines.runner import (BatchSummary, batch_lock, parse_jobs, plan_batch, read_status,
                              record_result, run_job, worker_died)
from tests.pipelines.test_say import speech_wav
from tests.pipelines.tiny_person import make_tiny_audio2expr, make_tiny_person


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    return make_tiny_person(root / "tiny"), make_tiny_audio2expr(root / "a2e")


@pytest.fixture
def jobs(tmp_path, models, monkeypatch):
    import avatar.io.person as person_io
    monkeypatch.setattr(person_io, "PERSONS_ROOT", models[0].parent)     # jobs name persons
    speech_wav(tmp_path / "a.wav", 1.0)
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "a", "audio": "a.wav"}\n{"id": "b", "audio": "a.wav", "seed": 4}\n')
    return parse_jobs(path, default_person=models[0].name)


def run_all(todo, out, models, summary):
    for job in todo:
        record_result(out, job, run_job(job, str(out), "cpu", str(models[1])), summary)


def test_done_jobs_are_skipped_and_killed_ones_recovered(jobs, tmp_path, models):
    out = tmp_path / "out"
    with batch_lock(out):
        plan = plan_batch(jobs, out)
        assert [j.id for j in plan.todo] == ["a", "b"]
        run_all(plan.todo, out, models, plan.summary)
    assert plan.summary.done == ["a", "b"] and not plan.summary.failed
    status = read_status(out)
    assert status["a"]["status"] == "done" and status["a"]["frames"] == 10
    assert json.loads((out / "a.json").read_text())["input"]["batch_job"]["id"] == "a"
    with batch_lock(out):
        again = plan_batch(jobs, out)
    assert again.todo == [] and again.summary.skipped == ["a", "b"]
    (out / "status.jsonl").unlink()                         # a kill before the record was written
    (out / "b.mp4").write_bytes((out / "b.mp4").read_bytes()[:500])     # and one clip torn
    with batch_lock(out):
        plan = plan_batch(jobs, out)
    assert plan.summary.recovered == ["a"] and [j.id for j in plan.todo] == ["b"]
    assert read_status(out)["a"]["recovered"] is True


def test_run_job_never_raises(jobs, tmp_path, models):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "a.wav").write_bytes(b"RIFF garbage")        # broken after validation
    record = run_job(jobs[0], str(out), "cpu", str(models[1]))
    assert record["status"] == "failed" and record["id"] == "a" and record["error"]
    summary = BatchSummary()
    record_result(out, jobs[0], record, summary)
    record_result(out, jobs[1], worker_died(jobs[1], MemoryError()), summary)
    assert set(summary.failed) == {"a", "b"} and "worker process died" in summary.failed["b"]
    assert {r["status"] for r in read_status(out).values()} == {"failed"}
    with batch_lock(out):
        assert [j.id for j in plan_batch(jobs, out).todo] == ["a", "b"]     # failed: retried
