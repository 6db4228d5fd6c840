import json

import numpy as np
import pytest

import cli
from avatar.face import tracker
from avatar.io.person import load_face_model, load_track
from tests.conftest import astronaut_face_frames, write_video


def train(tmp_path, *extra):
    return cli.main(["train-person", "--persons-dir", str(tmp_path / "persons"), "--no-render",
                     "--consent", CONSENT, *extra])


CONSENT = "the astronaut photo of scikit-image (public domain); test only"


def test_train_person_writes_a_complete_tracked_folder(tmp_path, face_video, capsys, monkeypatch):
    assert train(tmp_path, "--video", str(face_video), "--name", "astro") == 0
    folder = tmp_path / "persons" / "astro"
    for name in ("person.json", "track.safetensors", "face_model.safetensors", "target.mp4",
                 "overlay.mp4", "contact_sheet.png"):
        assert (folder / name).stat().st_size > 0, name
    config = json.loads((folder / "person.json").read_text())
    assert config["n_frames"] == 24 and config["holdout_start"] == 20 and config["status"] == "tracked"
    assert config["metrics"]["tracking"]["face_found_fraction"] == 1.0
    track, poses = load_track(folder / "track.safetensors")
    model = load_face_model(folder / "face_model.safetensors")
    assert len(track) == 24 and len(poses) == 24 and model.mean.shape == (468, 3)
    assert "held-out landmark error" in capsys.readouterr().out

    # same video again: tracking comes from the cache, the folder is reused
    monkeypatch.setattr(tracker, "detect_frames", lambda *a, **k: pytest.fail("tracked twice"))
    assert train(tmp_path, "--video", str(face_video), "--name", "astro") == 0


def test_other_video_does_not_overwrite_without_force(tmp_path, face_video, capsys):
    assert train(tmp_path, "--video", str(face_video), "--name", "p") == 0
    other = write_video(tmp_path / "other.mp4", astronaut_face_frames(22, shift=-1.0))
    before = (tmp_path / "persons" / "p" / "target.mp4").read_bytes()
    assert train(tmp_path, "--video", str(other), "--name", "p") == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "persons" / "p" / "target.mp4").read_bytes() == before
    assert train(tmp_path, "--video", str(other), "--name", "p", "--force") == 0


@pytest.mark.parametrize("name, message", [("../evil", "not allowed"), ("a/b", "not allowed")])
def test_bad_names(tmp_path, face_video, capsys, name, message):
    assert train(tmp_path, "--video", str(face_video), "--name", name) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "persons").exists() or not any((tmp_path / "persons").iterdir())


def test_too_short_video(tmp_path, capsys):
    short = write_video(tmp_path / "short.mp4", astronaut_face_frames(10))   # 1 s
    assert train(tmp_path, "--video", str(short), "--name", "s") == 2
    err = capsys.readouterr().err
    assert "at least 2 s" in err and "Traceback" not in err


def test_not_a_video(tmp_path, capsys):
    bad = tmp_path / "x.mp4"
    bad.write_text("hello")
    assert train(tmp_path, "--video", str(bad), "--name", "x") == 2
    assert "not a readable video" in capsys.readouterr().err


def test_train_person_with_renderer_then_say(tmp_path, face_video):
    persons = tmp_path / "persons"
    code = cli.main(["train-person", "--persons-dir", str(persons), "--runs-dir", str(tmp_path / "runs"),
                     "--video", str(face_video), "--name", "astro", "--steps", "2", "--device", "cpu",
                     "--consent", CONSENT])
    assert code == 0
    folder = persons / "astro"
    config = json.loads((folder / "person.json").read_text())
    assert config["status"] == "complete" and "renderer.safetensors" in config["files"]
    assert config["command"].endswith("--name astro --minutes 60 --steps 2")
    run = next((tmp_path / "runs").iterdir())
    assert (run / "checkpoint.safetensors").is_file()
    speech = tmp_path / "s.wav"
    import soundfile as sf
    t = np.arange(16000) / 16000
    sf.write(speech, (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.8)).astype(np.float32), 16000)
    out = tmp_path / "out.mp4"
    assert cli.main(["say", "--audio", str(speech), "--person", str(folder), "-o", str(out)]) == 0
    from avatar.video.check import check_media
    media = check_media(out)
    assert media.n_frames == 10 and abs(media.audio_s - 1.0) < 0.05 and not media.errors
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["person"]["consent"]["statement"] == CONSENT      # repeated in every side-car
