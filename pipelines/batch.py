"""Run many say-jobs from a JSONL file with worker processes; safe to kill and re-run.

    python cli.py batch jobs.jsonl --out clips/ --person demo --workers 2

One job per line: {"id": "a1", "text": "Hello" | "text_file": "a1.txt" | "audio": "a1.wav",
"person": "demo", <options>}
(options: fps, size, start_frame, blink, head_motion, expression_scale, seed, watermark,
target_video, batch_size). All lines are checked first; every bad line is listed with its number
and nothing runs until they are fixed. Outputs: <out>/<id>.mp4 + <id>.json; <out>/status.jsonl
records each finished job. Running the same command again skips finished jobs and retries
failed ones. Outputs never replace files this toolkit did not make (unless --overwrite), and --out
may not be inside a person or checkpoint folder. Exit code 0 when every job is done, 1 when some failed.
"""
from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_audio2expr_argument, add_device_argument
    p.add_argument("jobs", help="JSONL file, one job per line")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--person", help="person for jobs that name none")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; each loads the models once)")
    add_device_argument(p)
    add_audio2expr_argument(p)
    p.add_argument("--check", action="store_true",
                   help="only validate the jobs file (and that the outputs may be written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing <id>.mp4 / <id>.json files this toolkit did not make")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: each job a Ray "
                        "task (pip install \".[ray]\"), same guarantees (docs/RELIABILITY.md)")
    p.add_argument("--address", help="with --engine ray: the Ray cluster, auto (the one `ray start` "
                   "began on this machine) or HOST:PORT of its head; default: a private Ray "
                   "instance on this machine for this run")


def run(args) -> int:
    from pathlib import Path

    from pipelines.runner import JobsFileError, check_outputs, parse_jobs, print_bad_lines, run_batch
    from avatar.errors import AvatarError

    if not 1 <= args.workers <= max(1, 4 * (os.cpu_count() or 1)):
        raise AvatarError(f"--workers {args.workers} is out of range; use 1 to "
                          f"{4 * (os.cpu_count() or 1)}")
    pool = engine_pool(args)           # a bad --address or a missing Ray: before the jobs file
    try:
        jobs = parse_jobs(args.jobs, default_person=args.person)
        check_outputs(jobs, Path(args.out), args.overwrite)      # before any work, also --check
    except JobsFileError as e:
        print_bad_lines(e)
        raise
    if args.check:
        print(f"{args.jobs}: {len(jobs)} valid jobs")
        return 0
    summary = run_batch(jobs, args.out, workers=args.workers, device=args.device,
                        progress=not args.quiet, audio2expr=args.audio2expr,
                        overwrite=args.overwrite, pool=pool)
    print(f"{len(summary.done)} done, {len(summary.skipped)} already finished (skipped), "
          f"{len(summary.recovered)} recovered after an interruption, {len(summary.failed)} failed"
          f" -> {args.out}")
    for job_id, error in summary.failed.items():
        print(f"  failed {job_id}: {error}")
    return 1 if summary.failed else 0


def engine_pool(args):
    """None for the local engine; for --engine ray, what runs the jobs as Ray tasks."""
    from avatar.errors import AvatarError
    if args.engine != "ray":
        if args.address:
            raise AvatarError("--address names a Ray cluster; it goes with --engine ray")
        return None
    from pipelines.ray_engine import ray_pool
    return ray_pool(args.address)
