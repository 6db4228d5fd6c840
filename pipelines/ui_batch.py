"""The batch tab's work: an uploaded jobs.jsonl run by the `batch` command in the background.

    request = start_batch(jobs_upload, extra_uploads, "demo", allow_no_watermark=False, options)
    batch_view(request)     # per-job status from the runner's status.jsonl; a zip when finished

The jobs file and the files it names (audio, text files, voices, target videos: uploaded with it,
named relative to it) are copied into a new request folder; the runner's own parse_jobs checks
every line first, then `batch` runs in a background process (ui_background) writing into
<request>/out. Files outside the request folder may not be named (the page can be reached by
others with --host), and a job may leave out the SYNTHETIC label only when the page's explicit
checkbox allows it.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from avatar.io.files import atomic_output, read_json, write_json
from pipelines import ui_background, ui_files

JOBS_NAME = "jobs.jsonl"
_FILE_KEYS = ("audio", "text_file", "voice", "target_video")


def start_batch(jobs_upload, extra_uploads, default_person: str | None, allow_no_watermark: bool,
                options) -> str:
    """Check and start a batch; returns its request id. AvatarError (JobsFileError listing every
    bad line) for a bad jobs file."""
    if jobs_upload is None:
        raise AvatarError("no jobs file uploaded; upload a .jsonl file with one job per line")
    folder = ui_files.new_request_folder("batch")
    try:
        return _start(folder, jobs_upload, extra_uploads, default_person, allow_no_watermark,
                      options)
    except AvatarError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _start(folder: Path, jobs_upload, extra_uploads, default_person, allow_no_watermark,
           options) -> str:
    from pipelines.runner import check_outputs, parse_jobs
    inputs, out = folder / "inputs", folder / "out"
    jobs_path = ui_files.take_uploads([jobs_upload], inputs, "jobs file", options.max_upload_mb,
                                      1)[0].rename(inputs / JOBS_NAME)
    if extra_uploads:
        ui_files.take_uploads(extra_uploads, inputs, "job", options.max_upload_mb, 200)
    check_named_files(jobs_path, inputs)
    if default_person and default_person not in ui_files.person_choices():
        raise AvatarError(f"person {default_person!r} is not one of the persons this page offers")
    jobs = parse_jobs(jobs_path, default_person=default_person or None)
    unmarked = [j.id for j in jobs if not j.settings().watermark]
    if unmarked and not allow_no_watermark:
        raise AvatarError(f"job(s) {', '.join(unmarked[:5])} ask for no visible SYNTHETIC label; "
                          "tick the checkbox that allows it, or remove \"watermark\": false")
    check_outputs(jobs, out)
    write_json(folder / "jobs.json", {"ids": [j.id for j in jobs]})
    argv = ["batch", str(jobs_path), "--out", str(out), "--device", options.device]
    if default_person:
        argv += ["--person", default_person]
    if options.audio2expr:
        argv += ["--audio2expr", str(options.audio2expr)]
    ui_background.start(folder / "job", argv)
    return folder.name


def check_named_files(jobs_path: Path, inputs: Path) -> None:
    """Every file a job names lies inside the request's inputs (relative, no '..' out of it)."""
    root = inputs.resolve()
    for number, line in enumerate(jobs_path.read_text(encoding="utf-8", errors="replace")
                                  .splitlines(), 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue                          # parse_jobs reports it with its line number
        if not isinstance(data, dict):
            continue
        nested = data.get("options") if isinstance(data.get("options"), dict) else {}
        for key in _FILE_KEYS:
            value = data.get(key, nested.get(key))
            if isinstance(value, str) and not (inputs / value).resolve().is_relative_to(root):
                raise AvatarError(f"line {number}: {key} {value!r} is outside the uploaded "
                                  "files; upload it with the jobs file and name it relative to it")


@dataclass(frozen=True)
class BatchView:
    request: str
    state: ui_background.JobState
    rows: list                   # [job id, status, detail]
    zip_path: Path | None

    def headline(self) -> str:
        done = sum(r[1] == "done" for r in self.rows)
        failed = sum(r[1] == "failed" for r in self.rows)
        line = (f"batch {self.request}: {self.state.status}; {done} of {len(self.rows)} done, "
                f"{failed} failed")
        return f"{line}; {self.state.error}" if self.state.error else line


def batch_view(request: str) -> BatchView:
    from pipelines.runner import read_status
    folder = ui_files.request_folder(request)
    if not (folder / "job" / ui_background.JOB).is_file():
        raise AvatarError(f"request {request} is not a batch")
    state = ui_background.state(folder / "job")
    status = read_status(folder / "out")
    ids = read_json(folder / "jobs.json", "batch jobs").get("ids", [])
    rows, running_shown = [], False
    for job_id in ids:
        record = status.get(job_id)
        if record:
            rows.append([job_id, record.get("status", "?"), record.get("error", "")])
        elif state.status == "running" and not running_shown:
            rows.append([job_id, "running", ""])
            running_shown = True
        else:
            rows.append([job_id, "waiting" if state.status == "running" else "not run", ""])
    zip_path = outputs_zip(folder) if state.status != "running" else None
    return BatchView(request, state, rows, zip_path)


def outputs_zip(folder: Path) -> Path | None:
    """<request>/<id>.zip with every finished clip, its side-car and status.jsonl (made once)."""
    out = folder / "out"
    files = sorted(p for p in out.glob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix in (".mp4", ".json", ".jsonl")) if out.is_dir() else []
    if not any(p.suffix == ".mp4" for p in files):
        return None
    path = folder / f"batch-{folder.name[:15]}.zip"
    if not path.is_file():
        with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for p in files:
                z.write(p, p.name)
    return path


def batch_requests() -> list[str]:
    """Ids of batches started from this page, newest first."""
    root = ui_files.ui_root() / "requests"
    found = [p.name for p in root.glob("*-batch-*") if (p / "job" / ui_background.JOB).is_file()] \
        if root.is_dir() else []
    return sorted(found, reverse=True)
