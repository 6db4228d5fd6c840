"""Batch crash-safety and throughput, local engine or Ray (issue 19).

    python bench/batch_resume.py --person demo [--jobs 20] [--workers 2] [--engine local|ray]
        [--scenario driver-kill|worker-kill|throughput] [--rounds N] [--audio2expr DIR] [--json OUT.json]

driver-kill (default): SIGKILL the batch process once half the jobs are recorded done, run the
same command again, verify. worker-kill (--engine ray): once half are done, SIGKILL the Ray worker
process of a job that is rendering (its clip unfinished in <out>/.ray-work/<host>-<pid>/); the run
goes on; verify, and count the attempts of every job (the worker folders it was seen rendering in,
polled every 50 ms). throughput: the same jobs with the local engine and with Ray (same --workers),
one after the other into fresh folders, --rounds times with the order swapped each round; wall
time of each run (Ray's includes starting its private instance, which is also timed on its own).

Jobs alternate text and audio (cut from ../shared/data/audio/eng_60s.wav, or a tone when that
file is missing). Verified: every clip decodes fully, its frame count matches its audio
(round(audio_s * fps)), the status file records each job as done exactly once, clips finished
before a driver kill were not written again (same mtime), no hidden file is left in the folder.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_AUDIO = REPO.parent / "shared" / "data" / "audio" / "eng_60s.wav"
SENTENCES = ["The weather is calm today.", "Please open the window.", "We will meet at noon.",
             "This clip is generated.", "Numbers like four and nine are fine."]


def make_jobs(folder: Path, n: int, person: str) -> Path:
    import soundfile as sf
    if SHARED_AUDIO.is_file():
        from avatar.audio import load_speech
        source = load_speech(SHARED_AUDIO).samples
    else:
        t = np.arange(16000 * 30) / 16000
        source = (0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32)
    lines = []
    for i in range(n):
        job = {"id": f"job{i:02d}", "person": person, "seed": i}
        if i % 2:
            start = (i * 16000 * 2) % max(1, len(source) - 16000 * 3)
            sf.write(str(folder / f"a{i:02d}.wav"), source[start:start + 16000 * (1 + i % 3)], 16000)
            job["audio"] = f"a{i:02d}.wav"
        else:
            job["text"] = SENTENCES[i % len(SENTENCES)]
        lines.append(json.dumps(job))
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def status_records(out: Path) -> list[dict]:
    records = []
    path = out / "status.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def done_ids(out: Path) -> list[str]:
    return [r["id"] for r in status_records(out) if r.get("status") == "done"]


def start_batch(jobs: Path, out: Path, args, engine: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "cli.py"), "batch", str(jobs), "--out", str(out),
           "--workers", str(args.workers), "--quiet", "--engine", engine or args.engine]
    if args.audio2expr:
        cmd += ["--audio2expr", args.audio2expr]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_half_done(proc: subprocess.Popen, out: Path, n: int, on_poll=None) -> bool:
    """Poll until n // 2 jobs are recorded done (False if the run ended first)."""
    while len(done_ids(out)) < n // 2 and proc.poll() is None:
        if on_poll:
            on_poll()
        time.sleep(0.05)
    if proc.poll() is not None:
        print(f"the first run ended (exit {proc.returncode}) before half the jobs were done:\n"
              f"{proc.communicate()[1][-500:]}", file=sys.stderr)
        return False
    return True


def verify(out: Path, n: int) -> dict:
    """Clips decode, frames match audio, each job recorded done once, nothing hidden left."""
    from avatar.video.check import check_media
    bad = {}
    for job_id in [f"job{i:02d}" for i in range(n)]:
        path = out / f"{job_id}.mp4"
        if not path.exists():
            bad[job_id] = "missing"
            continue
        c = check_media(path, 16000)
        fps = json.loads((out / f"{job_id}.json").read_text())["output"]["fps"]
        if not (c.errors == "" and c.n_frames == round(c.audio_s * fps) and c.audio_samples > 0):
            bad[job_id] = f"bad: {c.n_frames} frames, {c.audio_s} s, {c.errors[:80]}"
    done = done_ids(out)
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".batch.lock")
    return {"valid_clips": n - len(bad), "bad_clips": bad, "done_records": len(done),
            "jobs_recorded_twice": len(done) - len(set(done)), "hidden_files_left": hidden}


def driver_kill(args, jobs: Path, out: Path) -> tuple[dict, bool]:
    t0 = time.perf_counter()
    proc = start_batch(jobs, out, args)
    if not wait_half_done(proc, out, args.jobs):
        return {}, False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = done_ids(out)
    before = {i: (out / f"{i}.mp4").stat().st_mtime_ns for i in killed_at}
    orphans = group_alive(proc.pid)
    t1 = time.perf_counter()
    proc = start_batch(jobs, out, args)
    stdout, stderr = proc.communicate()
    t2 = time.perf_counter()
    redone = [i for i, m in before.items() if (out / f"{i}.mp4").stat().st_mtime_ns != m]
    result = {"done_when_killed": len(killed_at), "workers_alive_after_kill": orphans,
              "rerun_exit_code": proc.returncode, "rerun_summary": stdout.strip().splitlines()[-1:],
              **verify(out, args.jobs), "redone_after_kill": redone,
              "first_run_s": round(t1 - t0, 1), "rerun_s": round(t2 - t1, 1),
              "stderr_tail": stderr.strip()[-300:]}
    ok = (result["valid_clips"] == args.jobs and not redone and not result["jobs_recorded_twice"]
          and proc.returncode == 0)
    return result, ok


def attempts_seen(out: Path, seen: dict[str, set]) -> None:
    """Which worker folders each job's unfinished mp4 has been seen in (one per attempt)."""
    for temp in (out / ".ray-work").glob("*/.job*.mp4.*.tmp.mp4"):
        seen.setdefault(temp.name[1:].split(".mp4.")[0], set()).add(temp.parent.name)


def worker_kill(args, jobs: Path, out: Path) -> tuple[dict, bool]:
    seen: dict[str, set] = {}
    t0 = time.perf_counter()
    proc = start_batch(jobs, out, args)
    if not wait_half_done(proc, out, args.jobs, lambda: attempts_seen(out, seen)):
        return {}, False
    victim = None
    while victim is None and proc.poll() is None:
        done = set(done_ids(out))
        rendering = [t for t in (out / ".ray-work").glob("*/.job*.mp4.*.tmp.mp4")
                     if t.name[1:].split(".mp4.")[0] not in done]
        if rendering:
            victim = (rendering[0].name[1:].split(".mp4.")[0], rendering[0].parent.name)
            os.kill(int(victim[1].rsplit("-", 1)[1]), signal.SIGKILL)
        time.sleep(0.05)
    while proc.poll() is None:
        attempts_seen(out, seen)
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    records = {r["id"]: r for r in status_records(out)}
    job_id, worker = victim or (None, None)
    result = {"killed_job": job_id, "killed_worker": worker,
              "killed_job_attempts_seen": len(seen.get(job_id, ())),
              "killed_job_recorded_by": records.get(job_id, {}).get("worker"),
              "attempts_seen_per_job": {str(k): sum(len(v) == k for v in seen.values()) for k in (1, 2, 3)},
              "exit_code": proc.returncode, "summary": stdout.strip().splitlines()[-1:],
              **verify(out, args.jobs), "run_s": round(time.perf_counter() - t0, 1),
              "stderr_tail": stderr.strip()[-300:]}
    ok = (result["valid_clips"] == args.jobs and not result["jobs_recorded_twice"]
          and result["killed_job_attempts_seen"] == 2 and proc.returncode == 0
          and result["killed_job_recorded_by"] not in (None, worker))
    return result, ok


def throughput(args, jobs: Path, folder: Path) -> tuple[dict, bool]:
    """--rounds rounds, the engines' order swapped each round (1: local first, 2: ray first, ...),
    so that a change of the machine's load between runs shows as a round-to-round difference."""
    result, ok = {"ray_start_stop_s": ray_start_stop(), "rounds": []}, True
    for i in range(args.rounds):
        runs = {}
        for engine in ("local", "ray")[::1 if i % 2 == 0 else -1]:
            runs[engine] = timed_run(args, jobs, folder / f"out-{i}-{engine}", engine)
            ok = ok and runs[engine].pop("ok")
        runs["ray_minus_local_s"] = round(runs["ray"]["wall_s"] - runs["local"]["wall_s"], 1)
        result["rounds"].append(runs)
    for engine in ("local", "ray"):
        result[f"{engine}_wall_s_total"] = round(sum(r[engine]["wall_s"] for r in result["rounds"]), 1)
    result["ray_minus_local_s_total"] = round(result["ray_wall_s_total"] - result["local_wall_s_total"], 1)
    return result, ok


def timed_run(args, jobs: Path, out: Path, engine: str) -> dict:
    t0 = time.perf_counter()
    proc = start_batch(jobs, out, args, engine)
    proc.communicate()
    wall = time.perf_counter() - t0
    check = verify(out, args.jobs)
    seconds = [r.get("seconds", 0) for r in status_records(out)]
    return {"wall_s": round(wall, 1), "jobs_per_min": round(60 * args.jobs / wall, 2),
            "job_seconds_sum": round(sum(seconds), 1), "exit_code": proc.returncode,
            "valid_clips": check["valid_clips"], "load_average_after": os.getloadavg(),
            "ok": proc.returncode == 0 and check["valid_clips"] == args.jobs}


def ray_start_stop() -> float:
    """Seconds to start and stop a private 2-CPU Ray instance (part of every --engine ray run)."""
    code = ("import logging, ray; ray.init(address='local', num_cpus=2, include_dashboard=False, "
            "object_store_memory=128 * 2**20, logging_level=logging.ERROR); ray.shutdown()")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ray"], check=True)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    return round(time.perf_counter() - t1 - (t1 - t0), 1)      # less python + import ray


def group_alive(pgid: int, timeout: float = 60.0) -> str:
    """How long the killed batch's workers (same process group) took to go away."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return f"gone after {time.perf_counter() - t0:.1f} s"
        time.sleep(0.1)
    alive = subprocess.run(["ps", "-o", "pid,args", "-g", str(pgid)], capture_output=True,
                           text=True).stdout.strip().splitlines()[1:]
    return f"still alive after {timeout:.0f} s: {alive}"


SCENARIOS = {"driver-kill": driver_kill, "worker-kill": worker_kill, "throughput": throughput}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--person", default="demo")
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="driver-kill")
    p.add_argument("--rounds", type=int, default=1, help="throughput: rounds of local + ray")
    p.add_argument("--audio2expr", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.scenario == "worker-kill" and args.engine != "ray":
        p.error("--scenario worker-kill kills a Ray worker: give --engine ray")
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    jobs = make_jobs(folder, args.jobs, args.person)
    load = os.getloadavg()
    scenario = SCENARIOS[args.scenario]
    result, ok = scenario(args, jobs, folder if args.scenario == "throughput" else folder / "out")
    result = {"scenario": args.scenario, "engine": args.engine, "jobs": args.jobs,
              "workers": args.workers, "person": args.person, "cpus": os.cpu_count(),
              "load_average_start": load, "load_average_end": os.getloadavg(), **result, "ok": ok}
    print(json.dumps(result, indent=2))
    if args.json:
        from avatar.io.files import write_json
        write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
