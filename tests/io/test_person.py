"""avatar/io/person.py: the person.json schema and limits, atomic replacement, staging resume;
avatar/io/files.py: JSON depth, temp files of live and dead runs; bench/kill_resume.py helpers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cli
from avatar.errors import AvatarError
from avatar.io import person as person_io
from avatar.io.files import atomic_output, json_depth, parse_json, remove_stale_temps, temp_prefix
from tests.conftest import astronaut_face_frames, write_video
from tests.pipelines.tiny_person import CONSENT, make_tiny_person

GOOD = {"format_version": 1, "fps": 25.0, "frame_size": [640, 360], "n_frames": 100,
        "holdout_start": 85, "status": "complete", "files": {"target.mp4": "a" * 64},
        "consent": {"statement": "Alice, agreed"}}


@pytest.mark.parametrize("change, message", [
    ({"fps": "fast"}, "'fps' must be a number"),
    ({"fps": 1e9}, "'fps' must be a number from 1.0 to 240.0"),
    ({"frame_size": [640]}, "'frame_size' must be"),
    ({"n_frames": True}, "'n_frames' must be an integer"),
    ({"files": {"target.mp4": "not a hash"}}, "'files' must be"),
    ({"status": "done"}, "'status' must be one of"),
    ({"consent": {"statement": ""}}, "'consent' must be"),
    ({"holdout_start": 101}, "holdout_start is past n_frames"),
    ({"format_version": 2}, "format version 2"),
])
def test_schema_refuses_bad_fields(change, message):
    with pytest.raises(AvatarError, match=message):
        person_io.validate_config({**GOOD, **change}, "person config X")
    person_io.validate_config(dict(GOOD), "person config X")


def test_config_size_and_depth_limits(tmp_path):
    (tmp_path / "person.json").write_text(json.dumps({**GOOD, "how_made": "x" * (2 << 20)}))
    with pytest.raises(AvatarError, match="larger than 1 MiB"):
        person_io.read_config(tmp_path)
    (tmp_path / "person.json").write_text(json.dumps({**GOOD, "metrics": {"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}}))
    with pytest.raises(AvatarError, match="nested 18 levels deep, at most 16"):
        person_io.read_config(tmp_path)


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth('{"a": "[[[{{", "b": ["\\"]]", {"c": 1}]}') == 3
    assert json_depth("[]" * 1000) == 1
    with pytest.raises(AvatarError, match="nested 100 levels"):
        parse_json("[" * 100 + "]" * 100, "x")


def test_stale_temps_of_dead_runs_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.mp4.~avatar-{dead}-abcd1234.tmp.mp4"
    stale_wav = tmp_path / f".audio.~avatar-{dead}-zz99zz99.wav"
    live = tmp_path / f"{temp_prefix('out.mp4')}efgh5678.tmp.mp4"
    other = tmp_path / ".hidden.tmp.mp4"                     # not our naming: never touched
    for p in (stale, stale_wav, live, other):
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale, stale_wav])
    assert live.exists() and other.exists()
    with atomic_output(tmp_path / "x.json") as tmp:
        assert tmp.name.startswith(temp_prefix("x.json"))


def test_install_swaps_atomically_and_leaves_nothing(tmp_path):
    final, staging = tmp_path / "p", person_io.staging_dir(tmp_path / "p")
    final.mkdir()
    (final / "person.json").write_text("old")
    staging.mkdir()
    (staging / "person.json").write_text("new")
    person_io.install(staging, final)
    assert (final / "person.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_person_needs_status_complete(tmp_path):
    folder = make_tiny_person(tmp_path / "t")
    person_io.update_config(folder, status="tracked")
    with pytest.raises(AvatarError, match="is not complete"):
        person_io.load_complete(str(folder))


def test_killed_renderer_training_keeps_old_person_and_rerun_completes(tmp_path, face_video,
                                                                       monkeypatch):
    import avatar.render as render
    persons = tmp_path / "persons"
    base = ["train-person", "--persons-dir", str(persons), "--runs-dir", str(tmp_path / "runs"),
            "--name", "p", "--consent", CONSENT, "--device", "cpu"]
    assert cli.main([*base, "--video", str(face_video), "--no-render"]) == 0
    old = {p.name: p.read_bytes() for p in (persons / "p").iterdir()}
    other = write_video(tmp_path / "other.mp4", astronaut_face_frames(22, shift=-1.0))
    real = render.train_renderer

    def killed(*a, **k):
        raise KeyboardInterrupt                              # stands in for a kill mid-training

    monkeypatch.setattr(render, "train_renderer", killed)
    assert cli.main([*base, "--video", str(other), "--force", "--steps", "2"]) == 130
    assert {p.name: p.read_bytes() for p in (persons / "p").iterdir()} == old
    staged = person_io.staging_dir(persons / "p")
    assert (staged / "track.safetensors").is_file()          # tracking kept for the rerun
    monkeypatch.setattr(render, "train_renderer", real)
    assert cli.main([*base, "--video", str(other), "--force", "--steps", "2"]) == 0
    folder, config, _ = person_io.load_complete(str(persons / "p"))
    assert config["inputs"][0]["name"] == "other.mp4" and config["consent"]["statement"] == CONSENT
    assert sorted(p.name for p in persons.iterdir() if p.suffix != ".lock") == ["p"]


def test_consent_is_required_and_repeated_in_side_cars(tmp_path, face_video, capsys):
    assert cli.main(["train-person", "--persons-dir", str(tmp_path), "--video", str(face_video),
                     "--name", "x", "--no-render"]) == 2
    assert "--consent is required" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_kill_script_helpers(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import kill_resume
    text = "tracking target.mp4:  50%|#####     | 150/300 [00:05<00:05]\rtracking target.mp4: " \
           " 100%|##########| 300/300 [00:10<00:00]\ntraining renderer:  10%|#   | 3/30 [00:01]"
    assert kill_resume.bars(text) == {"tracking target.mp4": (150, 300), "training renderer": (3, 3)}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f".x.mp4.~avatar-{os.getpid()}-abcdefgh.tmp.mp4").write_bytes(b"")
    (tmp_path / "a" / ".staging-p").mkdir()
    (tmp_path / "a" / "ok.mp4").write_bytes(b"")
    assert len(kill_resume.leftovers(tmp_path / "a")) == 2
