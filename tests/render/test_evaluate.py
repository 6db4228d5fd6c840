"""The evaluate command on a tiny person fitted to a real face video (scikit-image's astronaut)."""
import json
import shutil
from pathlib import Path

import pytest

from avatar.io.files import write_json
from avatar.io.person import FORMAT_VERSION, save_face_model, save_track
from avatar.render.model import RendererConfig
from avatar.render.train import train_renderer

SMALL = RendererConfig(texture_size=64, texture_levels=2, channels=(8, 8, 8, 8))


@pytest.fixture(scope="module")
def astronaut_person(face_video, tmp_path_factory) -> Path:
    from avatar.face.model import fit_face_model
    from avatar.face.tracker import track_video
    folder = tmp_path_factory.mktemp("astro") / "astro"
    folder.mkdir()
    track = track_video(face_video, progress=False)
    model, poses = fit_face_model(track)
    save_track(folder / "track.safetensors", track, poses)
    save_face_model(folder / "face_model.safetensors", model)
    shutil.copy(face_video, folder / "target.mp4")
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION, "name": "astro",
                                        "fps": float(track.fps), "frame_size": list(track.frame_size),
                                        "n_frames": len(track)})
    train_renderer(folder, minutes=0, steps=2, device="cpu", crop_size=128, batch_size=2,
                   run_dir=folder.parent / "run", progress=False, model_config=SMALL)
    return folder


def test_evaluate_command_reports_metrics_and_writes_video(astronaut_person, face_video, tmp_path):
    from cli import main
    out_json = tmp_path / "m.json"
    video = tmp_path / "side.mp4"
    code = main(["evaluate", "--person", str(astronaut_person), "--video", str(face_video),
                 "--json", str(out_json), "--out", str(video), "--quiet", "--device", "cpu"])
    assert code == 0
    m = json.loads(out_json.read_text())
    assert m["frames"] == [20, 24] and m["n_frames"] == 4                # last 15 % of 24 frames
    assert m["role"] == "target video, held-out frames"
    assert 10 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    assert m["lmd_frames"] == 4 and 0 <= m["lmd_px"] < 40
    assert m["mouth_frames"] == 4 and 0 < m["mouth_detail_ratio"] and 0 < m["mouth_hf_ratio"]
    assert 5 < m["mouth_psnr"] < 60 and m["mouth_flicker_ratio"] > 0
    assert video.stat().st_size > 1000


def test_evaluate_reads_the_person_folder_only(astronaut_person, face_video, tmp_path):
    from cli import main
    before = {p.name: p.stat().st_mtime_ns for p in astronaut_person.iterdir()}
    code = main(["evaluate", "--person", str(astronaut_person), "--video", str(face_video),
                 "--out", str(tmp_path / "side.mp4"), "--quiet", "--device", "cpu"])
    assert code == 0
    assert {p.name: p.stat().st_mtime_ns for p in astronaut_person.iterdir()} == before


def test_evaluate_takes_every_frame_of_a_clip_not_trained_on(astronaut_person, tmp_path):
    from tests.conftest import astronaut_face_frames, write_video
    from cli import main
    other = write_video(tmp_path / "other.mp4", astronaut_face_frames(12, shift=1.0))
    out_json = tmp_path / "m.json"
    code = main(["evaluate", "--person", str(astronaut_person), "--video", str(other),
                 "--json", str(out_json), "--out", str(tmp_path / "side.mp4"), "--quiet", "--device", "cpu"])
    assert code == 0
    m = json.loads(out_json.read_text())
    assert m["frames"] == [0, 12] and m["n_frames"] == 12 and m["role"] == "clip not trained on, all frames"


def test_evaluate_refuses_a_clip_the_person_was_fitted_on(astronaut_person, tmp_path, capsys):
    from avatar.io.files import read_json, sha256_file
    from tests.conftest import astronaut_face_frames, write_video
    from cli import main
    folder = tmp_path / "astro"
    shutil.copytree(astronaut_person, folder)
    fitted = write_video(tmp_path / "fitted.mp4", astronaut_face_frames(10, shift=2.0))
    config = read_json(folder / "person.json")
    config["inputs"] = [{"name": "fitted.mp4", "sha256": sha256_file(fitted)}]
    write_json(folder / "person.json", config)
    code = main(["evaluate", "--person", str(folder), "--video", str(fitted), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fitted on" in err[0] and "target.mp4" in err[0]


def test_evaluate_refuses_missing_renderer(tmp_path, face_video, capsys):
    from cli import main
    folder = tmp_path / "empty"
    folder.mkdir()
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION})
    code = main(["evaluate", "--person", str(folder), "--video", str(face_video), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "renderer" in err[0]
