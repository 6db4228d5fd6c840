"""Many say-jobs from a JSONL file: validated up front, run by worker processes, resumable.

jobs.jsonl, one JSON object per line (blank lines are skipped):

    {"id": "intro", "text": "Hello there", "person": "demo"}
    {"id": "q2", "audio": "clips/q2.wav", "head_motion": "still", "expression_scale": 1.2}

`id` names the outputs (<out>/<id>.mp4 + <id>.json); exactly one of `text`, `text_file` (a UTF-8
file whose text is spoken) or `audio` (paths relative to the jobs file; a `text` that names an
existing file is refused: use `text_file`); `voice` (text jobs: a piper .onnx voice file, relative to the jobs
file; default: the bundled English voice); `person` (a name; default: --person); any say option by its long name
with '_' (fps, size, start_frame, blink, head_motion, expression_scale, seed, watermark,
target_video, batch_size), at the top level or inside "options".

Every line is checked before any work starts and all bad lines are reported with their numbers.
`<out>/status.jsonl` gets one line per finished job (appended by the parent process only, then
fsync'ed). A re-run skips jobs recorded as done (same job spec, output still there), adopts
finished outputs a kill prevented from being recorded, retries failed jobs and redoes nothing else.

The guarantees live in separate functions so another engine (e.g. a Ray cluster) can keep them
while scheduling jobs its own way:

    jobs = parse_jobs("jobs.jsonl", default_person="demo")    # every line checked, or JobsFileError
    with batch_lock(out):                                      # one writer per output folder
        plan = plan_batch(jobs, out)                           # skipped / recovered / todo
        for job in plan.todo:
            record = run_job(job, str(out), device)            # in any process; never raises
            record_result(out, job, record, plan.summary)      # status.jsonl, from one process

`run_batch` is that loop on a local process pool.
"""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.io.files import exclusive_lock, read_text
from avatar.io.person import check_person_name, person_dir
from avatar.audio.text import speakable_text
from avatar.config import DEFAULT_DEVICE, SETTING_NAMES, SaySettings, settings_from

STATUS_NAME = "status.jsonl"
LOCK_NAME = ".batch.lock"
MAX_JOBS_BYTES = 64 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_OPTION_TYPES = {"fps": (int, float), "size": int, "start_frame": int, "blink": str,
                 "head_motion": str, "expression_scale": (int, float), "seed": int,
                 "watermark": bool, "target_video": str, "batch_size": int}
assert set(_OPTION_TYPES) == set(SETTING_NAMES), "a job option for every SaySettings field"


@dataclass(frozen=True)
class Job:
    id: str
    line: int
    person: str
    text: str | None = None
    audio: str | None = None                 # absolute path
    options: dict = field(default_factory=dict)
    spec_sha256: str = ""
    voice: str | None = None                 # piper voice .onnx (absolute path) for text jobs

    def settings(self) -> SaySettings:
        return settings_from(self.options)


# --- validation ------------------------------------------------------------------------------

def parse_jobs(path: str | Path, default_person: str | None = None) -> list[Job]:
    """All jobs of a JSONL file; AvatarError listing every bad line (with numbers) if any."""
    path = Path(path)
    lines = read_text(path, "jobs file", MAX_JOBS_BYTES).splitlines()
    jobs, errors, first_line = [], [], {}
    persons: dict[str, str | None] = {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            job = parse_line(text, number, path.parent, default_person, persons)
        except AvatarError as e:
            errors.append(f"line {number}: {e}")
            continue
        key = job.id.casefold()                # a and A name one file on macOS / Windows
        if key in first_line:
            first, other = first_line[key]
            same = "" if other == job.id else f" as {other!r}, which differs only in case"
            errors.append(f"line {number}: duplicate id {job.id!r} (first used on line {first}"
                          f"{same}); ids name the output files, make them unique")
            continue
        first_line[key] = (number, job.id)
        jobs.append(job)
    if errors:
        raise JobsFileError(path, errors, len(jobs) + len(errors))
    if not jobs:
        raise AvatarError(f"jobs file {path} holds no jobs; write one JSON object per line")
    return jobs


class JobsFileError(AvatarError):
    """Bad lines in a jobs file: `lines` holds one message per bad line."""

    def __init__(self, path: Path, lines: list[str], total: int, what: str = "job lines in",
                 fix: str = "fix them and run again"):
        self.lines = lines
        super().__init__(f"{len(lines)} of {total} {what} {path} are invalid (listed above); "
                         f"{fix}, nothing was started")


def parse_line(text: str, number: int, base: Path, default_person: str | None,
               persons: dict) -> Job:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AvatarError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise AvatarError("must be a JSON object like {\"id\": \"a\", \"text\": \"Hi\"}")
    data = dict(data)
    nested = data.pop("options", {})
    if not isinstance(nested, dict):
        raise AvatarError("'options' must be a JSON object")
    job_id = data.pop("id", None)
    if job_id is None:
        raise AvatarError("'id' is missing; every job needs a unique id (it names the output files)")
    if not isinstance(job_id, str) or not _ID.match(job_id) or ".." in job_id:
        raise AvatarError(f"id {json.dumps(job_id)} is not allowed: use 1-64 letters, digits, "
                          "'-', '_' or '.', starting with a letter or digit")
    text_value, audio_value = data.pop("text", None), data.pop("audio", None)
    text_file = data.pop("text_file", None)
    if sum(v is not None for v in (text_value, audio_value, text_file)) != 1:
        raise AvatarError(f"job {job_id!r} needs exactly one of 'text', 'text_file' or 'audio'")
    if text_file is not None:
        text_value = _read_text_file(text_file, base)
    elif isinstance(text_value, str) and _names_a_file(text_value, base):
        raise AvatarError(f"the text {text_value.strip()!r} is the name of an existing file; to "
                          "speak what it says use \"text_file\" instead of \"text\"")
    person = data.pop("person", None) or default_person
    voice_value = data.pop("voice", None)
    options = {**nested, **data}
    audio = _check_audio(audio_value, base) if audio_value is not None else None
    voice = _check_voice(voice_value, base, text_value is not None) if voice_value is not None else None
    if text_value is not None:
        _check_text(text_value, english=voice is None)
    _check_person(person, persons)
    _check_options(options, base)
    spec = {"text": text_value, "audio_sha256": _sha256(audio) if audio else None,
            "person": person, "options": options}
    if voice:
        spec["voice_sha256"] = _sha256(voice)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return Job(job_id, number, person, text_value, audio, options, digest, voice)


def _read_text_file(value, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise AvatarError("'text_file' must be a file path (relative to the jobs file)")
    return read_text(base / value, "text file", 64 * 1024)


def _names_a_file(text: str, base: Path) -> bool:
    t = text.strip()
    if not t or "\n" in t or len(t) > 4096:
        return False
    try:
        return (base / t).expanduser().is_file() or Path(t).expanduser().is_file()
    except OSError:
        return False


def _check_text(value, english: bool = True) -> None:
    if not isinstance(value, str):
        raise AvatarError("'text' must be a string")
    speakable_text(value, english)


def _check_voice(value, base: Path, is_text: bool) -> str:
    from avatar.audio.tts import voice_files
    if not is_text:
        raise AvatarError("'voice' picks who speaks a text; it does not apply to 'audio' jobs")
    if not isinstance(value, str) or not value:
        raise AvatarError("'voice' must be the path of a piper .onnx voice (relative to the jobs file)")
    return voice_files(str((base / value).resolve()))[0]


def _check_audio(value, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise AvatarError("'audio' must be a file path (relative to the jobs file)")
    path = (base / value).resolve()
    if not path.is_file():
        raise AvatarError(f"audio file {value} not found (looked for {path})")
    if path.stat().st_size == 0:
        raise AvatarError(f"audio file {value} is empty (0 bytes)")
    return str(path)


def _check_person(person, persons: dict) -> None:
    if person is None:
        raise AvatarError("no 'person' given and no --person default")
    if not isinstance(person, str):
        raise AvatarError("'person' must be a person name")
    if person not in persons:
        try:
            check_person_name(person)
            person_dir(person)
            persons[person] = None
        except AvatarError as e:
            persons[person] = str(e)
    if persons[person]:
        raise AvatarError(persons[person])


def _check_options(options: dict, base: Path) -> None:
    unknown = sorted(set(options) - set(_OPTION_TYPES))
    if unknown:
        raise AvatarError(f"unknown option(s) {', '.join(map(repr, unknown))}; known: "
                          f"{', '.join(sorted(_OPTION_TYPES))}")
    for key, value in options.items():
        wanted = _OPTION_TYPES[key]
        bad_bool = isinstance(value, bool) and wanted is not bool
        if bad_bool or not isinstance(value, wanted):
            names = {int: "an integer", str: "a string", bool: "true or false"}.get(wanted, "a number")
            raise AvatarError(f"option {key!r} must be {names}, got {json.dumps(value)}")
    if "target_video" in options:
        video = (base / options["target_video"]).resolve()
        if not video.is_file():
            raise AvatarError(f"target video {options['target_video']} not found")
        _check_video(str(video), options["target_video"])
        options["target_video"] = str(video)
    settings_from(options)


_VIDEOS: dict[str, str | None] = {}


def _check_video(path: str, name: str) -> None:
    """The target video is a readable video (probed once per file and run)."""
    from avatar.video.probe import probe_video
    if path not in _VIDEOS:
        try:
            probe_video(path)
            _VIDEOS[path] = None
        except AvatarError as e:
            _VIDEOS[path] = f"target video {name}: {e}"
    if _VIDEOS[path]:
        raise AvatarError(_VIDEOS[path])


def _sha256(path: str) -> str:
    from avatar.io.provenance import cached_sha256
    return cached_sha256(Path(path))


# --- status file -----------------------------------------------------------------------------

def read_status(out_dir: Path) -> dict[str, dict]:
    """Last record per job id; torn or garbled lines (a kill mid-write) are ignored."""
    path = out_dir / STATUS_NAME
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            records[record["id"]] = record
    return records


def append_status(out_dir: Path, record: dict) -> None:
    """Append one JSON line in a single write, then fsync (a kill leaves at most a torn tail)."""
    path = out_dir / STATUS_NAME
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            data = b"\n" + data                   # close a line torn by an earlier kill
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def is_done(job: Job, out_dir: Path, status: dict[str, dict]) -> bool:
    record = status.get(job.id)
    if not record or record.get("status") != "done" or record.get("spec_sha256") != job.spec_sha256:
        return False
    video = out_dir / f"{job.id}.mp4"
    return video.is_file() and video.stat().st_size == record.get("bytes") \
        and (out_dir / f"{job.id}.json").is_file()


def recover_finished(job: Job, out_dir: Path) -> dict | None:
    """A status record for a job whose outputs were complete when the run was killed, or None.

    The mp4 is renamed into place before its side-car, so a side-car naming this exact job spec
    means the video finished; it is still decoded fully to be sure.
    """
    from avatar.video.check import check_media
    video, sidecar = out_dir / f"{job.id}.mp4", out_dir / f"{job.id}.json"
    if not (video.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta["input"]["batch_job"]["spec_sha256"] != job.spec_sha256:
            return None
        check = check_media(video)
        if check.errors or check.n_frames != meta["output"]["frames"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AvatarError):
        return None
    return {"id": job.id, "status": "done", "spec_sha256": job.spec_sha256,
            "bytes": video.stat().st_size, "frames": check.n_frames, "recovered": True}


# --- running ---------------------------------------------------------------------------------

@dataclass
class BatchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def batch_lock(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir / LOCK_NAME, f"another batch is writing to {out_dir}; wait for it "
                        "to finish or choose another --out"):
        yield


def remove_stale_temp_files(out_dir: Path) -> int:
    """Temp files left by a killed run (only ever ours: hidden, with our suffixes). Called under
    the batch lock, so files of the older naming (no process id) cannot belong to a live run."""
    from avatar.io.files import is_temp_name, remove_stale_temps
    n = len(remove_stale_temps(out_dir))
    for p in out_dir.iterdir():
        if p.name.startswith(".") and p.is_file() and not is_temp_name(p.name) and (
                p.name.endswith((".tmp.mp4", ".json.tmp")) or
                (p.name.startswith(".audio.") and p.name.endswith(".wav"))):
            p.unlink(missing_ok=True)
            n += 1
    return n


def check_outputs(jobs: list[Job], out_dir: Path, overwrite: bool = False) -> None:
    """The output policy for a batch: --out not inside a person or checkpoint folder, writable,
    and no job's <id>.mp4 / <id>.json replaces a file this toolkit did not make."""
    from avatar.io.output import check_output_folder, check_replaceable
    check_output_folder(out_dir)
    bad = []
    for job in jobs:
        try:
            check_replaceable(out_dir / f"{job.id}.mp4", overwrite)
        except AvatarError as e:
            bad.append(f"job {job.id!r} (line {job.line}): {e}")
    if bad:
        raise JobsFileError(out_dir, bad, len(jobs), what="outputs of jobs",
                            fix="rename those files or pass --overwrite")


@dataclass
class BatchPlan:
    """What a run has to do: `todo` jobs to run; the others are already in `summary`."""
    todo: list[Job]
    summary: BatchSummary


def plan_batch(jobs: list[Job], out_dir: Path) -> BatchPlan:
    """Call under batch_lock: removes temp files of killed runs, skips jobs recorded as done,
    records (in status.jsonl) jobs whose complete outputs a kill kept from being recorded."""
    summary = BatchSummary()
    remove_stale_temp_files(out_dir)
    status = read_status(out_dir)
    todo = []
    for job in jobs:
        if is_done(job, out_dir, status):
            summary.skipped.append(job.id)
        elif (record := recover_finished(job, out_dir)) is not None:
            append_status(out_dir, record)
            summary.recovered.append(job.id)
        else:
            todo.append(job)
    return BatchPlan(todo, summary)


def record_result(out_dir: Path, job: Job, record: dict, summary: BatchSummary) -> None:
    """Append a finished job's status record (one process only) and count it in `summary`."""
    append_status(out_dir, record)
    if record["status"] == "done":
        summary.done.append(job.id)
    else:
        summary.failed[job.id] = record["error"]
        tqdm.write(f"job {job.id} (line {job.line}) failed: {record['error']}")


def worker_died(job: Job, error: BaseException) -> dict:
    """The status record of a job whose worker process died (killed, out of memory)."""
    return {"id": job.id, "status": "failed",
            "error": f"worker process died ({type(error).__name__}); run again to retry"}


def run_batch(jobs: list[Job], out_dir: str | Path, workers: int = 1, device: str = DEFAULT_DEVICE,
              progress: bool = True, audio2expr: str | None = None,
              overwrite: bool = False, pool=None) -> BatchSummary:
    """`pool` runs plan.todo (default: local worker processes; pipelines/ray_engine.py: Ray
    tasks) with _run_pool's arguments; everything else here is the same for every engine."""
    out_dir = Path(out_dir)
    check_outputs(jobs, out_dir, overwrite)
    with batch_lock(out_dir):
        plan = plan_batch(jobs, out_dir)
        if plan.todo:
            (pool or _run_pool)(plan.todo, out_dir, workers, device, progress, plan.summary,
                                audio2expr)
    return plan.summary


def _run_pool(todo: list[Job], out_dir: Path, workers: int, device: str, progress: bool,
              summary: BatchSummary, audio2expr: str | None) -> None:
    workers = max(1, min(workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=not progress)
    with futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(threads, os.getpid())) as pool:
        pending = {pool.submit(run_job, job, str(out_dir), device, audio2expr): job for job in todo}
        for future in futures.as_completed(pending):
            job = pending[future]
            try:
                record = future.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                record = worker_died(job, e)
            record_result(out_dir, job, record, summary)
            bar.update(1)
    bar.close()


def _init_worker(threads: int, parent: int) -> None:
    _die_with_parent(parent)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the batch process dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


_PIPELINES: dict[tuple, object] = {}


def worker_pipeline(person: str, device: str, audio2expr: str | None = None):
    """Each worker loads each person (and the shared networks) once and keeps them."""
    from pipelines.say_pipeline import SayPipeline
    key = (person, device, audio2expr)
    if key not in _PIPELINES:
        _PIPELINES[key] = SayPipeline.from_person(person, device=device, audio2expr=audio2expr)
    return _PIPELINES[key]


def run_job(job: Job, out_dir: str, device: str, audio2expr: str | None = None,
            work_dir: str | None = None) -> dict:
    """Make one clip; never raises: returns a status record (done or failed). With `work_dir`
    (a worker's own folder inside out_dir) the clip is made there and then published."""
    t0 = time.perf_counter()
    out = Path(out_dir) / f"{job.id}.mp4"
    try:
        result = make_clip(job, Path(work_dir) / out.name if work_dir else out, device, audio2expr)
        if work_dir:
            publish_clip(Path(work_dir) / out.name, out)
        return {"id": job.id, "status": "done", "spec_sha256": job.spec_sha256,
                "bytes": out.stat().st_size, "frames": result.n_frames,
                "seconds": round(time.perf_counter() - t0, 2)}
    except AvatarError as e:
        return {"id": job.id, "status": "failed", "error": str(e)}
    except Exception as e:
        log = Path(out_dir) / "logs" / f"{job.id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        return {"id": job.id, "status": "failed",
                "error": f"internal error {type(e).__name__}: {e} (traceback in {log})"}


def publish_clip(made: Path, out: Path) -> None:
    """Move a finished clip into --out: the mp4 first, then its side-car (the order
    recover_finished relies on); each rename is atomic on one file system, shared or not."""
    os.replace(made, out)
    os.replace(made.with_suffix(".json"), out.with_suffix(".json"))


def make_clip(job: Job, out: Path, device: str, audio2expr: str | None = None):
    """One job's clip with a SayPipeline (its outputs were checked for the whole batch before
    any work started, hence overwrite=True here)."""
    pipe = worker_pipeline(job.person, device, audio2expr)
    if job.voice is not None:
        pipe = pipe.with_voice(job.voice)
    batch_job = {"batch_job": {"id": job.id, "line": job.line, "spec_sha256": job.spec_sha256}}
    return pipe(job.text, audio=job.audio, output=out, settings=job.settings(), overwrite=True,
                provenance=batch_job)


def print_bad_lines(error: JobsFileError) -> None:
    for line in error.lines:
        print(line, file=sys.stderr)
