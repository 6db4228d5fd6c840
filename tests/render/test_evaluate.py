"""The evaluate command on a tiny person fitted to a real face video (scikit-image's astronaut)."""
import json
from pathlib import Path

import pytest

from avatar.io.files import write_json
from avatar.io.person import FORMAT_VERSION, save_face_model, save_track
from avatar.render.model import RendererConfig
from avatar.render.train import train_renderer

SMALL = RendererConfig(texture_size=64, texture_levels=2, channels=(8, 8, 8, 8))


@pytest.fixture(scope="module")
def astronaut_person(face_video, tmp_path_factory) -> Path:
    import shutil

    from avatar.face.model import fit_face_model
    from avatar.face.tracker import track_video
    folder = tmp_path_factory.mktemp("astro") / "astro"
    folder.mkdir()
    track = track_video(face_video, progress=False)
    model, poses = fit_face_model(track)
    save_track(folder / "track.safetensors", track, poses)
    save_face_model(folder / "face_model.safetensors", model)
    shutil.copy(face_video, folder / "target.mp4")
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION, "name": "astro"})
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
    assert 10 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    assert m["lmd_px"] is None or 0 <= m["lmd_px"] < 40
    assert video.stat().st_size > 1000


def test_evaluate_refuses_missing_renderer(tmp_path, face_video, capsys):
    from cli import main
    folder = tmp_path / "empty"
    folder.mkdir()
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION})
    code = main(["evaluate", "--person", str(folder), "--video", str(face_video), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "renderer" in err[0]
