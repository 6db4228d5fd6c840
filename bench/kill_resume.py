"""kill -9 `train-person` (tracking and renderer training) and `say` at random moments, rerun,
and check that nothing is lost (issue 14).

    python bench/kill_resume.py                       # 10 + 10 kills on a real clip, JSON in bench/results/
    python bench/kill_resume.py --kills 3 --video clip.mp4 --steps 10

For each kill: a fresh $AVATAR_HOME and tracking cache; `train-person` (or `say`) is started,
SIGKILLed (the main process, like `kill -9 PID`; its ffmpeg children then die on their own) at a
random moment, then the same command is run again. Checked after every kill and rerun:
- the rerun exits 0 and its person / video is complete (person: `check_complete` passes: status
  complete, every file's sha256 as recorded; video: decodes fully, side-car beside it);
- no person folder reads as complete when it is not: after the kill, the person's name either
  does not resolve or resolves to a complete, valid person;
- work lost: tracking frames redone (killed run's last tracked frame - the rerun's first) is at
  most one chunk; renderer steps redone (killed run's last step - the step the rerun resumes at)
  at most one checkpoint interval (`checkpoint_every` in the run's config.json);
- no temp files remain anywhere under $AVATAR_HOME, the cache or the output folder (our temp
  names, staging/trash folders, tracking chunks).
Kill moments: train-person kills are drawn half inside the tracking phase and half after it
(renderer training), from the phase times of one uninterrupted reference run; say kills from its
reference run time.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_VIDEOS = [REPO.parent / f"shared/data/person/obama/obama_bookshelf_{c}.mp4" for c in "abc"]
CONSENT = "public-domain footage (official White House video); kill/resume benchmark only"
_BAR = re.compile(r"(tracking [^:]+|training renderer|[A-Za-z][\w ]*?):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
# (progress bar, run config with its checkpoint interval, key in "lost")
STAGES = [("training renderer", "runs/*/config.json", "renderer_steps"),
          ("training lips window", "runs/*/mouth/config.json", "lips_stage_steps")]


def bars(text: str) -> dict[str, tuple[int, int]]:
    """First and last count of every tqdm bar in a stderr text: {desc: (first, last)}."""
    seen: dict[str, list[int]] = {}
    for piece in re.split(r"[\r\n]", text):
        m = _BAR.search(piece)
        if m:
            seen.setdefault(m.group(1).strip(), []).append(int(m.group(2)))
    return {k: (v[0], v[-1]) for k, v in seen.items()}


class Env:
    """A fresh $AVATAR_HOME + cache for one trial."""

    def __init__(self, root: Path, name: str):
        self.root = root / name
        shutil.rmtree(self.root, ignore_errors=True)
        self.home, self.cache, self.out = self.root / "home", self.root / "cache", self.root / "out"
        for d in (self.home, self.cache, self.out):
            d.mkdir(parents=True)
        self.env = {**os.environ, "AVATAR_HOME": str(self.home), "AVATAR_CACHE": str(self.cache),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                    "PYTHONUNBUFFERED": "1"}

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=REPO, env=self.env,
                                stdout=open(log.with_suffix(".out"), "w"), stderr=open(log, "w"),
                                start_new_session=True)

    def run(self, args: list[str], log: Path, timeout: float = 1800) -> tuple[int, str]:
        proc = self.start(args, log)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = -9
        return code, log.read_text(errors="replace")


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the main process only, then wait (at most 10 s) for its children to exit."""
    with_group = proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(with_group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(with_group, signal.SIGKILL)


def leftovers(*folders: Path) -> list[str]:
    from avatar.io.files import is_temp_name
    found = []
    for folder in folders:
        for p in folder.rglob("*"):
            n = p.name
            if is_temp_name(n) or n.startswith((".staging-", ".trash-")) or n.endswith(
                    (".parts", ".copy")) or (n.startswith(".") and n.endswith((".tmp", ".tmp.mp4"))):
                found.append(str(p.relative_to(folder.parent)))
    return sorted(found)


def person_state(home: Path, name: str) -> str:
    """'absent', 'complete' (passes check_complete) or 'BROKEN: ...' (reads as a person but is not
    complete and valid: a failure of the guarantee)."""
    env = dict(os.environ)
    code = ("import os,sys; from avatar.io import person as p\n"
            "from avatar.errors import AvatarError\n"
            "try:\n f = p.person_dir(sys.argv[1])\nexcept AvatarError:\n print('absent'); sys.exit()\n"
            "try:\n p.load_complete(sys.argv[1]); print('complete')\n"
            "except AvatarError as e:\n print('BROKEN: ' + str(e))\n")
    env["AVATAR_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code, name], cwd=REPO, env=env, capture_output=True,
                         text=True)
    return (out.stdout.strip() or out.stderr.strip().splitlines()[-1])


def train_args(videos, steps, minutes, max_side) -> list[str]:
    args = ["train-person", "--name", "p", "--steps", str(steps), "--minutes", str(minutes),
            "--device", "cpu", "--max-side", str(max_side), "--consent", CONSENT]
    for v in videos:
        args += ["--video", str(v)]
    return args


def reference_train(root: Path, args: list[str]) -> dict:
    """One uninterrupted run, with the times tracking started (its chunk folder appears in the
    cache) and ended (the track appears)."""
    env = Env(root, "reference-train")
    t0 = time.time()
    proc = env.start(args, env.root / "log.txt")
    started = tracked = None
    tracks = env.cache / "tracks"
    while proc.poll() is None:
        if started is None and any(p.suffix == ".parts" for p in tracks.glob("*")):
            started = time.time() - t0
        if tracked is None and any(p.suffix == ".safetensors" for p in tracks.glob("*")):
            tracked = time.time() - t0
        time.sleep(0.02)
    total = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"reference train-person failed:\n{(env.root / 'log.txt').read_text()[-2000:]}")
    tracked = tracked or total / 3
    return {"total_s": round(total, 2), "tracking_started_s": round(started or 1.0, 2),
            "tracked_s": round(tracked, 2)}


def trial_train(root: Path, i: int, args: list[str], kill_at: float, phase: str) -> dict:
    env = Env(root, f"train-{i:02d}")
    proc = env.start(args, env.root / "killed.txt")
    time.sleep(kill_at)
    finished_before_kill = proc.poll() is not None
    if not finished_before_kill:
        kill9(proc)
    killed_log = (env.root / "killed.txt").read_text(errors="replace")
    state_after_kill = person_state(env.home, "p")
    code, log = env.run(args, env.root / "rerun.txt")
    state = person_state(env.home, "p")
    before, after = bars(killed_log), bars(log)
    lost = {}
    track_bar = next((k for k in before if k.startswith("tracking")), None)
    if track_bar:
        last_done = before[track_bar][1]
        resumed_at = after.get(track_bar, (last_done, last_done))[0] if track_bar in after else None
        # no tracking bar in the rerun: tracking came whole from the cache (nothing redone)
        lost["tracking_frames"] = 0 if resumed_at is None else max(0, last_done - resumed_at)
    intervals = {}
    for bar, config_glob, key in STAGES:
        config = next(env.home.glob(config_glob), None)
        intervals[key] = json.loads(config.read_text()).get("checkpoint_every") if config else None
        if bar in before:
            # the rerun's bar starts at the step it resumed from; no bar: the stage was done
            resumed = after[bar][0] if bar in after else before[bar][1]
            lost[key] = max(0, before[bar][1] - resumed)
    from avatar.face.tracker import CHUNK_FRAMES
    ok_loss = lost.get("tracking_frames", 0) <= CHUNK_FRAMES and all(
        intervals[k] is None or lost.get(k, 0) <= intervals[k] for k in intervals)
    left = leftovers(env.home, env.cache)
    return {"command": "train-person", "phase": phase, "kill_at_s": round(kill_at, 2),
            "finished_before_kill": finished_before_kill, "after_kill": state_after_kill,
            "rerun_exit": code, "after_rerun": state, "lost": lost,
            "checkpoint_every": intervals, "tracking_chunk": CHUNK_FRAMES, "loss_within_bound": ok_loss,
            "leftovers": left,
            "ok": code == 0 and state == "complete" and not state_after_kill.startswith("BROKEN")
            and ok_loss and not left,
            "rerun_tail": "" if code == 0 else log[-800:]}


def check_video(path: Path) -> str:
    from avatar.video.check import check_media
    if not path.exists():
        return "absent"
    media = check_media(path)
    if media.errors or not media.n_frames:
        return f"BROKEN: {media.errors}"
    return "complete" + ("" if path.with_suffix(".json").is_file() else " (no side-car yet)")


def trial_say(root: Path, i: int, person_home: Path, args: list[str], kill_at: float) -> dict:
    env = Env(root, f"say-{i:02d}")
    shutil.copytree(person_home / "persons", env.home / "persons")
    proc = env.start(args + ["-o", str(env.out / "clip.mp4")], env.root / "killed.txt")
    time.sleep(kill_at)
    finished_before_kill = proc.poll() is not None
    if not finished_before_kill:
        kill9(proc)
    after_kill = check_video(env.out / "clip.mp4")
    left_after_kill = leftovers(env.out)
    code, log = env.run(args + ["-o", str(env.out / "clip.mp4")], env.root / "rerun.txt")
    state = check_video(env.out / "clip.mp4")
    left = leftovers(env.home, env.cache, env.out)
    return {"command": "say", "kill_at_s": round(kill_at, 2), "finished_before_kill": finished_before_kill,
            "after_kill": after_kill, "temp_files_after_kill": len(left_after_kill),
            "rerun_exit": code, "after_rerun": state, "leftovers": left,
            "ok": code == 0 and state == "complete" and not after_kill.startswith("BROKEN") and not left,
            "rerun_tail": "" if code == 0 else log[-800:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", action="append", help="clip(s) of one person (default: the "
                    "obama_bookshelf a, b, c clips from ../shared, 11.5 s)")
    ap.add_argument("--kills", type=int, default=10, help="kills per command (default 10)")
    ap.add_argument("--steps", type=int, default=30, help="renderer steps (default 30)")
    ap.add_argument("--minutes", type=float, default=5.0, help="renderer time budget")
    ap.add_argument("--max-side", type=int, default=480, help="tracking size (default 480)")
    ap.add_argument("--text", default="Nothing is lost when the job is killed and run again.")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, default=REPO / "bench/results/kill_resume.json")
    args = ap.parse_args()
    videos = [Path(v) for v in (args.video or DEFAULT_VIDEOS)]
    rng = random.Random(args.seed)
    root = args.work or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    targs = train_args(videos, args.steps, args.minutes, args.max_side)
    ref = reference_train(root, targs)
    print(f"reference train-person: {ref}", flush=True)
    trials = []
    for i in range(args.kills):
        phase = "tracking" if i % 2 == 0 else "training"
        lo, hi = (ref["tracking_started_s"], ref["tracked_s"]) if phase == "tracking" else \
            (ref["tracked_s"], ref["total_s"])
        r = trial_train(root, i, targs, rng.uniform(lo, max(lo + 0.1, hi)), phase)
        trials.append(r)
        print(json.dumps({k: r[k] for k in ("phase", "kill_at_s", "after_kill", "rerun_exit",
                                             "after_rerun", "lost", "ok")}), flush=True)
    person_home = root / "reference-train" / "home"
    say_args = ["say", args.text, "--person", "p", "--device", "cpu", "--quiet"]
    env = Env(root, "reference-say")
    shutil.copytree(person_home / "persons", env.home / "persons")
    t = time.time()
    code, log = env.run(say_args + ["-o", str(env.out / "clip.mp4")], env.root / "log.txt")
    say_s = time.time() - t
    if code != 0:
        raise SystemExit(f"reference say failed:\n{log[-2000:]}")
    print(f"reference say: {say_s:.1f} s", flush=True)
    for i in range(args.kills):
        r = trial_say(root, i, person_home, say_args, rng.uniform(0.5, say_s))
        trials.append(r)
        print(json.dumps({k: r[k] for k in ("kill_at_s", "after_kill", "rerun_exit", "after_rerun",
                                             "ok")}), flush=True)
    summary = {
        "kills": len(trials),
        "reruns_completed": sum(t["rerun_exit"] == 0 for t in trials),
        "kills_survived": sum(t["ok"] for t in trials),
        "data_lost": sum(not t["ok"] for t in trials),
        "broken_after_kill": sum(str(t["after_kill"]).startswith("BROKEN") for t in trials),
        "temp_files_left": sum(len(t["leftovers"]) for t in trials),
        "max_tracking_frames_lost": max([t["lost"].get("tracking_frames", 0) for t in trials
                                         if t["command"] == "train-person"] or [0]),
        "max_renderer_steps_lost": max([t["lost"].get("renderer_steps", 0) for t in trials
                                        if t["command"] == "train-person"] or [0]),
        "max_lips_stage_steps_lost": max([t["lost"].get("lips_stage_steps", 0) for t in trials
                                          if t["command"] == "train-person"] or [0]),
        "checkpoint_every": next((t["checkpoint_every"] for t in trials
                                  if t["command"] == "train-person"), None),
    }
    result = {"videos": [v.name for v in videos], "steps": args.steps, "max_side": args.max_side,
              "reference_train": ref, "reference_say_s": round(say_s, 2), "summary": summary,
              "trials": trials, "wall_s": round(time.time() - t0, 1)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if not args.work:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if summary["data_lost"] == 0 else 1)


if __name__ == "__main__":
    main()
