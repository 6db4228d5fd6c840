"""reenact end to end: a real face video drives the tiny synthetic person."""
import json

import pytest

import cli
from avatar.video.check import check_media, read_tags
from avatar.video.reader import VideoReader
from avatar.video.writer import watermark_box
from tests.pipelines.tiny_person import make_tiny_person


@pytest.fixture(scope="module")
def tiny_person(tmp_path_factory):
    return make_tiny_person(tmp_path_factory.mktemp("persons") / "tiny")


def test_reenact_silent_source(tmp_path, tiny_person, face_video):
    out = tmp_path / "re.mp4"
    code = cli.main(["reenact", "--source", str(face_video), "--person", str(tiny_person),
                     "-o", str(out), "--quiet"])
    assert code == 0
    check = check_media(out)
    assert check.errors == "" and check.n_frames == 24 and check.audio_samples == 0
    frames = VideoReader(out).read_all()
    x0, y0, x1, y1 = watermark_box(frames.shape[2], frames.shape[1])
    assert frames[:, y0:y1, x0:x1].max() > 200 and frames[:, y0:y1, x0:x1].min() < 60
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["synthetic"] is True and meta["command"] == "reenact"
    assert meta["input"]["kind"] == "video" and meta["input"]["frames"] == 24
    assert meta["input"]["sha256"] and meta["output"]["frames"] == 24
    assert set(meta["person"]["files_sha256"]) >= {"renderer.safetensors", "face_model.safetensors"}
    assert "synthetic" in read_tags(out)["comment"]


def test_reenact_missing_source(tmp_path, tiny_person, capsys):
    code = cli.main(["reenact", "--source", str(tmp_path / "none.mp4"), "--person",
                     str(tiny_person), "-o", str(tmp_path / "x.mp4")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: source video file") and "does not exist" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
