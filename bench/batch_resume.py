"""Batch crash-safety check: N jobs, SIGKILL the batch process half way, run again, verify.

    python bench/batch_resume.py --person demo [--jobs 20] [--workers 2] [--audio2expr DIR]
                                 [--json bench/results/batch_resume.json]

Jobs alternate text and audio (cut from ../shared/data/audio/eng_60s.wav, or a tone when that
file is missing). After the re-run it checks: every clip decodes fully, its frame count matches
its audio (round(audio_s * fps)), the status file records each job as done exactly once, and the
clips that were finished before the kill were not written again (same inode and mtime).
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


def done_ids(out: Path) -> list[str]:
    ids = []
    path = out / "status.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("status") == "done":
            ids.append(record["id"])
    return ids


def run_batch(jobs: Path, out: Path, args) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "cli.py"), "batch", str(jobs), "--out", str(out),
           "--workers", str(args.workers), "--quiet"]
    if args.audio2expr:
        cmd += ["--audio2expr", args.audio2expr]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def main() -> int:
    from avatar.video.check import check_media
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--person", default="demo")
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--audio2expr", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    jobs, out = make_jobs(folder, args.jobs, args.person), folder / "out"

    t0 = time.perf_counter()
    proc = run_batch(jobs, out, args)
    while len(done_ids(out)) < args.jobs // 2 and proc.poll() is None:
        time.sleep(0.1)
    if proc.poll() is not None:
        print(f"the first run ended (exit {proc.returncode}) before half the jobs were done:\n"
              f"{proc.communicate()[1][-500:]}", file=sys.stderr)
        return 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = done_ids(out)
    before = {i: (out / f"{i}.mp4").stat() for i in killed_at}
    orphans = _group_alive(proc.pid)
    t1 = time.perf_counter()
    proc = run_batch(jobs, out, args)
    stdout, stderr = proc.communicate()
    t2 = time.perf_counter()

    ids = [f"job{i:02d}" for i in range(args.jobs)]
    done = done_ids(out)
    clips = {}
    for job_id in ids:
        path = out / f"{job_id}.mp4"
        if not path.exists():
            clips[job_id] = "missing"
            continue
        c = check_media(path, 16000)
        fps = json.loads((out / f"{job_id}.json").read_text())["output"]["fps"]
        ok = c.errors == "" and c.n_frames == round(c.audio_s * fps) and c.audio_samples > 0
        clips[job_id] = "ok" if ok else f"bad: {c.n_frames} frames, {c.audio_s} s, {c.errors[:80]}"
    redone = [i for i, st in before.items()
              if (out / f"{i}.mp4").stat().st_mtime_ns != st.st_mtime_ns]
    result = {"jobs": args.jobs, "workers": args.workers, "person": args.person,
              "done_when_killed": len(killed_at), "workers_alive_after_kill": orphans,
              "rerun_exit_code": proc.returncode, "rerun_summary": stdout.strip().splitlines()[:1],
              "valid_clips": sum(v == "ok" for v in clips.values()),
              "done_records": len(done), "jobs_recorded_twice": len(done) - len(set(done)),
              "redone_after_kill": redone, "bad_clips": {k: v for k, v in clips.items() if v != "ok"},
              "first_run_s": round(t1 - t0, 1), "rerun_s": round(t2 - t1, 1),
              "stderr_tail": stderr.strip()[-300:]}
    print(json.dumps(result, indent=2))
    if args.json:
        from avatar.io.files import write_json
        write_json(args.json, result)
    ok = (result["valid_clips"] == args.jobs and not redone and result["jobs_recorded_twice"] == 0
          and proc.returncode == 0)
    return 0 if ok else 1


def _group_alive(pgid: int, timeout: float = 15.0) -> str:
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


if __name__ == "__main__":
    sys.exit(main())
