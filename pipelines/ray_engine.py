"""`batch --engine ray`: each job a Ray task, with the local engine's guarantees.

The driver (the `batch` process) does what the local engine does, with the same functions of
pipelines/runner.py: every line validated before any work, the batch lock, the plan (jobs
recorded as done skipped, finished outputs a kill kept from being recorded adopted, temp files
of killed runs removed) and every status record appended by the driver alone. Only the running of
the jobs left to do moves to Ray (`runner.run_batch(..., pool=ray_pool(address))`):

- each job is one task (`job_task`) running runner.run_job in a Ray worker process; the person
  models are loaded once per worker process and kept (runner.worker_pipeline's cache), since Ray
  reuses its worker processes for later tasks;
- a worker that dies mid-job (killed, out of memory, its node lost) makes Ray run the task again
  on another worker (up to MAX_RETRIES times); only the result the driver finally receives is
  recorded, so a job is recorded once however often it ran, and after the last retry it is
  recorded as failed (runner.worker_died) while the others go on;
- a worker makes its clip in a folder of its own, `<out>/.ray-work/<host>-<pid>/`, and renames
  it into --out (mp4, then side-car; runner.publish_clip) before it returns: a killed worker
  leaves files only in its own folder, which the driver removes when the run ends (the next run
  when it starts), never a half-written clip in --out. With workers on several machines --out
  must be one shared folder (NFS, SMB, ...) at the same path on every node.

--workers N: at most N jobs at once. Without --address a private Ray instance is started for the
run with N x T CPUs, T = cores // N threads per job as the local engine gives each worker process,
and stopped after it; with --address the jobs go to that cluster, one CPU (one thread) each.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import socket
from pathlib import Path

from tqdm import tqdm

from avatar.errors import AvatarError
from pipelines import runner

MAX_RETRIES = 2                    # runs of a job after a worker died under it
WORK_DIR = ".ray-work"             # inside --out: one folder per worker process
LOCAL_OBJECT_STORE = 128 * 2**20   # a private instance moves only small job specs and records
_HOST = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)+|\[[0-9A-Fa-f:.]+\])$")


def ray_pool(address: str | None = None):
    """The `pool` for runner.run_batch that runs jobs as Ray tasks. Checks --address and that Ray
    is installed (imported here, never for the local engine); AvatarError otherwise."""
    check_address(address)
    import_ray()
    return functools.partial(run_ray, address=address)


def check_address(address: str | None) -> None:
    if address is None or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not (host and _HOST.match(host) and port.isdigit() and 0 < int(port) < 65536):
        raise AvatarError(f"--address {address!r} is not a Ray cluster address; give auto (the "
                          "cluster started on this machine with `ray start`) or HOST:PORT of its "
                          "head node (port 6379 unless `ray start --head --port` said otherwise)")


def import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")      # offline: no usage reports
    try:
        import ray
    except ImportError:
        raise AvatarError("--engine ray needs Ray, which is not installed: pip install \".[ray]\" "
                          "(ray 2.60.0), or leave out --engine for the local engine") from None
    return ray


def run_ray(todo: list, out_dir: Path, workers: int, device: str, progress: bool,
            summary: runner.BatchSummary, audio2expr: str | None, address: str | None = None) -> None:
    """runner._run_pool's job, on Ray: run `todo`, record each result as it arrives."""
    ray = import_ray()
    with ray_session(ray, address, workers) as threads:
        clear_work_folder(out_dir)
        task = ray.remote(max_retries=MAX_RETRIES)(job_task).options(num_cpus=threads)
        queue, pending = list(todo), {}
        bar = tqdm(total=len(todo), desc="jobs (ray)", unit="job", disable=not progress)
        while queue or pending:
            while queue and len(pending) < workers:
                job = queue.pop(0)
                pending[task.remote(job, str(out_dir), device, audio2expr, threads)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            runner.record_result(out_dir, job, task_result(ray, ready[0], job), summary)
            bar.update(1)
        bar.close()
    clear_work_folder(out_dir)          # every task has ended: nothing writes there any more


def task_result(ray, ref, job: runner.Job) -> dict:
    """The record a task returned, or the failure record when Ray gave up on it."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:          # job_task itself raised: a bug
        return {"id": job.id, "status": "failed",
                "error": f"internal error in the Ray task: {str(e).strip().splitlines()[-1]}"}
    except ray.exceptions.RayError as e:              # the worker or its node died every time
        return runner.worker_died(job, e)


@contextlib.contextmanager
def ray_session(ray, address: str | None, workers: int):
    """Connect (or start a private local instance); yields the threads each job gets."""
    if ray.is_initialized():             # the caller (a test, a notebook) connected already
        yield 1
        return
    if address is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ray.init(address="local", num_cpus=workers * threads, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE, logging_level=logging.ERROR)
    else:
        threads = 1
        connect(ray, address)
    try:
        yield threads
    finally:
        ray.shutdown()


def connect(ray, address: str) -> None:
    if address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
        except OSError as e:
            raise AvatarError(f"cannot reach the Ray head at {address} ({e.strerror or e}); start "
                              "it with `ray start --head` there, or check --address") from None
    try:
        ray.init(address=address, logging_level=logging.ERROR)
    except Exception as e:    # Ray raises ConnectionError, RuntimeError, AuthenticationError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AvatarError(f"cannot connect to the Ray cluster at {address}: {first}; a cluster "
                          "with token authentication (RAY_AUTH_MODE=token) needs its token here "
                          "too (~/.ray/auth_token or RAY_AUTH_TOKEN)") from None


def clear_work_folder(out_dir: Path) -> None:
    shutil.rmtree(Path(out_dir) / WORK_DIR, ignore_errors=True)


def job_task(job: runner.Job, out_dir: str, device: str, audio2expr: str | None,
             threads: int) -> dict:
    """One job, in a Ray worker process: made in this worker's own folder, then published."""
    import torch
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    worker = f"{socket.gethostname()}-{os.getpid()}"
    work = Path(out_dir) / WORK_DIR / worker
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return {"id": job.id, "status": "failed", "worker": worker,
                "error": f"cannot write into {work} on {socket.gethostname()} ({e.strerror}); "
                         "--out must be a folder every Ray node can write (a shared folder)"}
    loaded = len(runner._PIPELINES)
    record = runner.run_job(job, out_dir, device, audio2expr, work_dir=str(work))
    record.update(worker=worker, models_loaded=len(runner._PIPELINES) - loaded)
    return record
