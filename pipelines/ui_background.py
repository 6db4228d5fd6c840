"""Background jobs of the web page: a CLI command run in its own process, outliving the page.

    start(folder, ["train-person", "--video", "a.mp4", ...])    # returns at once
    state(folder)                                                # running / done / failed / stopped

The job is `python -m pipelines.ui_background FOLDER`: it reads FOLDER/job.json, runs the same
`cli.main(argv)` a terminal would (so the same checks, messages and progress bars), with stdout
and stderr in FOLDER/log.txt, and writes FOLDER/exit.json with the exit code when it ends. It
starts a new session, so closing the page or stopping the web server does not stop it, and a new
page reattaches by reading the folder. Progress is read back from the CLI's own tqdm bars in the
log.
"""
from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from avatar.errors import AvatarError
from avatar.io.files import read_json, write_json

JOB, LOG, EXIT = "job.json", "log.txt", "exit.json"
LOG_TAIL_BYTES = 1 << 20                 # tqdm redraws fill a log fast; keep the stages
# cli.main's one line: at a line start, or right after a bar it interrupted ("...frame/s]error: ")
_ERROR = re.compile(r"(?:^|[\r\n]|(?<=\]))((?:error|interrupted): [^\r\n]+)")
INTERRUPTED = 130                        # cli.main's exit code after Ctrl-C / stop()
# "desc:  45%|####5     | 45/100 [...]" (tqdm), "desc: 100% [00:01]" (one-step stage bars) or
# "desc: 66step [01:00, 1.10step/s]" (no known total: a time budget)
_BAR = re.compile(r"(?:^|\r|\n)([A-Za-z][\w .-]{0,40}?):\s+(?:(\d{1,3})%(?:\|[^|\r\n]*\|\s*(\d+)/(\d+))?"
                  r"|(\d+)[A-Za-z]* \[)")


@dataclass(frozen=True)
class JobState:
    status: str                          # running, done, failed, stopped (killed, no exit code)
    bars: dict = field(default_factory=dict)   # bar name -> (done, total; 0 = unknown), as the CLI shows them
    error: str = ""                      # the CLI's one-line message of a failed job
    log_tail: str = ""
    started: str = ""


def start(folder: Path, argv: list[str]) -> None:
    """Run `cli.main(argv)` in a detached process writing into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (EXIT, LOG):
        (folder / name).unlink(missing_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_json(folder / JOB, {"argv": [str(a) for a in argv], "started": now})
    with open(folder / LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.ui_background", str(folder)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=_repo_root(),
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    job = read_json(folder / JOB, "job file")
    job.update(pid=proc.pid, pid_start=_start_ticks(proc.pid))
    write_json(folder / JOB, job)


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def state(folder: Path) -> JobState:
    """What the job in `folder` is doing now (AvatarError if there is none)."""
    if not (folder / JOB).is_file():
        raise AvatarError(f"no job in {folder}")
    job = read_json(folder / JOB, "job file")
    tail = log_tail(folder / LOG)
    if (folder / EXIT).is_file():
        code = read_json(folder / EXIT, "exit file").get("code")
        status = {0: "done", INTERRUPTED: "stopped"}.get(code, "failed")
    else:
        status = "running" if is_alive(job) else "stopped"
    error = last_error(tail) if status != "done" else ""
    return JobState(status, progress_bars(tail), error, tail, job.get("started", ""))


def is_alive(job: dict) -> bool:
    """The job's process is still running (its pid with the same start time: pids are reused)."""
    pid = job.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True                      # started a moment ago; the pid is being recorded
    ticks = _start_ticks(pid)
    return ticks is not None and ticks == job.get("pid_start", ticks) and not _zombie(pid)


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _zombie(pid: int) -> bool:
    try:
        state_field = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    if state_field == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)      # our own child: reap it
        except ChildProcessError:
            pass
        return True
    return False


def stop(folder: Path) -> bool:
    """Interrupt a running job like Ctrl-C in a terminal (finished work is kept)."""
    job = read_json(folder / JOB, "job file")
    if state(folder).status != "running" or not isinstance(job.get("pid"), int):
        return False
    try:
        os.killpg(job["pid"], signal.SIGINT)
    except ProcessLookupError:
        return False
    return True


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a log, from the first whole line (or bar redraw) within `limit` bytes."""
    try:
        with open(path, "rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - limit)
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    if start:
        cut = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=len(data))
        data = data[cut + 1:]
    return data.decode("utf-8", errors="replace")


def progress_bars(text: str) -> dict:
    """The last reading of every CLI progress bar in a log: name -> (done, total)."""
    bars = {}
    for m in _BAR.finditer(text):
        name, percent, done, total, count = m.groups()
        if count is not None:
            bars[name.strip()] = (int(count), 0)          # total unknown
        else:
            bars[name.strip()] = (int(done), int(total)) if total else (int(percent), 100)
    return bars


def last_error(text: str) -> str:
    """The one-line message the CLI printed for a user mistake ('error: ...'), if any."""
    found = _ERROR.findall(text)
    return found[-1].strip() if found else ""


def screen_lines(text: str, n: int = 12) -> str:
    """The last `n` lines of a log as a terminal would show them (bars redrawn with \\r)."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.replace("\r\n", "\n").split("\n")]
    return "\n".join([ln for ln in lines if ln.strip()][-n:])


def main(folder: str) -> int:
    """The background process: run the job's command, then record its exit code."""
    import cli
    path = Path(folder)
    argv = read_json(path / JOB, "job file")["argv"]
    code = 1
    try:
        code = cli.main(argv)
    except SystemExit as e:              # argparse: usage error, already printed
        code = e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:            # stopped before the command started
        code = INTERRUPTED
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        write_json(path / EXIT, {"code": code, "finished": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds")})
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
