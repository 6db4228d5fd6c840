"""Jobs-file validation (every bad line reported with its number) and the status file."""
import json

import pytest

import avatar.io.person as person_io
from pipelines.runner import (JobsFileError, Job, append_status, is_done, parse_jobs, read_status,
                          remove_stale_temp_files)
from avatar.errors import AvatarError


@pytest.fixture
def persons_root(tmp_path, monkeypatch):
    root = tmp_path / "persons"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "person.json").write_text('{"format_version": 1}')
    monkeypatch.setattr(person_io, "PERSONS_ROOT", root)
    return root


def _write(tmp_path, lines):
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_jobs(tmp_path, persons_root):
    (tmp_path / "a.wav").write_bytes(b"RIFF....")
    path = _write(tmp_path, [
        '{"id": "one", "text": "Hello", "person": "alice"}',
        '',
        '{"id": "two", "audio": "a.wav", "head_motion": "still", "expression_scale": 1.5}',
        '{"id": "three", "text": "Hi", "options": {"seed": 3, "watermark": false}}',
    ])
    jobs = parse_jobs(path, default_person="alice")
    assert [j.id for j in jobs] == ["one", "two", "three"]
    assert [j.line for j in jobs] == [1, 3, 4]
    assert jobs[1].audio == str(tmp_path / "a.wav")
    assert jobs[1].settings().head_motion == "still"
    assert jobs[2].settings().watermark is False and jobs[2].settings().seed == 3
    assert len({j.spec_sha256 for j in jobs}) == 3


BAD_LINES = {
    '{"id": "a", "text": "ok"': "not valid JSON",
    '["id", "text"]': "must be a JSON object",
    '{"text": "no id"}': "'id' is missing",
    '{"id": "../etc", "text": "x"}': "not allowed",
    '{"id": "b", "text": "x", "audio": "a.wav"}': "exactly one of",
    '{"id": "c"}': "exactly one of",
    '{"id": "d", "text": "   "}': "the text to speak is empty",
    '{"id": "d2", "text": 5}': "'text' must be a string",
    '{"id": "d3", "text": "你好"}': "letters the English voice cannot speak",
    '{"id": "d4", "text": "😀🎉"}': "no words to speak",
    '{"id": "e", "text": "' + "x" * 10000 + '"}': "at most 5000",
    '{"id": "f", "audio": "missing.wav"}': "not found",
    '{"id": "g", "text": "x", "colour": "red"}': "unknown option",
    '{"id": "h", "text": "x", "fps": "fast"}': "must be a number, got \"fast\"",
    '{"id": "i", "text": "x", "blink": "often"}': "blink 'often' is unknown",
    '{"id": "j", "text": "x", "person": "bob"}': "person 'bob' not found",
    '{"id": "k", "text": "x", "person": "../alice"}': "is not allowed",
    '{"id": "l", "text": "x", "seed": true}': "'seed' must be an integer, got true",
    '{"id": "m", "text": "x", "voice": "missing.onnx"}': "does not exist",
    '{"id": "n", "audio": "a.wav", "voice": "v.onnx"}': "does not apply to 'audio' jobs",
    '{"id": "o", "text": "x", "voice": 3}': "'voice' must be the path",
    '{"id": "ok", "text": "dup"}': "duplicate id 'ok' (first used on line 1)",
}


def test_every_bad_line_reported_with_number(tmp_path, persons_root):
    (tmp_path / "a.wav").write_bytes(b"RIFF....")
    lines = ['{"id": "ok", "text": "fine"}'] + list(BAD_LINES)
    with pytest.raises(JobsFileError) as info:
        parse_jobs(_write(tmp_path, lines), default_person="alice")
    reported = info.value.lines
    assert len(reported) == len(BAD_LINES)
    for number, (line, expected) in enumerate(BAD_LINES.items(), 2):
        message = next(m for m in reported if m.startswith(f"line {number}: "))
        assert expected in message, (line[:40], message)
    assert f"{len(BAD_LINES)} of {len(lines)} job lines" in str(info.value)
    assert "\n" not in str(info.value)


def test_voice_per_text_job(tmp_path, persons_root):
    (tmp_path / "v.onnx").write_bytes(b"model")
    (tmp_path / "v.onnx.json").write_text("{}")
    path = _write(tmp_path, ['{"id": "a", "text": "Hallo", "voice": "v.onnx"}',
                             '{"id": "b", "text": "Hallo"}',
                             '{"id": "c", "text": "你好", "voice": "v.onnx"}'])
    a, b, c = parse_jobs(path, default_person="alice")
    assert a.voice == str(tmp_path / "v.onnx") and b.voice is None
    assert a.spec_sha256 != b.spec_sha256          # another voice is another clip
    assert c.voice is not None                     # no English-only check for another voice


def test_empty_and_missing_jobs_file(tmp_path, persons_root):
    with pytest.raises(AvatarError, match="holds no jobs"):
        parse_jobs(_write(tmp_path, ["", "  "]), default_person="alice")
    with pytest.raises(AvatarError, match="does not exist"):
        parse_jobs(tmp_path / "nope.jsonl")


def test_status_file_survives_torn_line(tmp_path):
    append_status(tmp_path, {"id": "a", "status": "done"})
    with open(tmp_path / "status.jsonl", "ab") as f:
        f.write(b'{"id": "b", "sta')                       # killed mid-write
    append_status(tmp_path, {"id": "c", "status": "failed", "error": "x"})
    status = read_status(tmp_path)
    assert set(status) == {"a", "c"}
    lines = (tmp_path / "status.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["id"] == "c"


def test_is_done_needs_matching_spec_and_output(tmp_path):
    job = Job("a", 1, "alice", text="hi", spec_sha256="s1")
    (tmp_path / "a.mp4").write_bytes(b"x" * 10)
    (tmp_path / "a.json").write_text("{}")
    status = {"a": {"id": "a", "status": "done", "spec_sha256": "s1", "bytes": 10}}
    assert is_done(job, tmp_path, status)
    assert not is_done(Job("a", 1, "alice", text="changed", spec_sha256="s2"), tmp_path, status)
    (tmp_path / "a.mp4").write_bytes(b"x" * 5)               # replaced / truncated output
    assert not is_done(job, tmp_path, status)


def test_stale_temp_files_removed(tmp_path):
    names = [".a.mp4.x1.tmp.mp4", ".a.json.x2.json.tmp", ".audio.x3.wav", "keep.mp4", ".hidden"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert remove_stale_temp_files(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.mp4"]
