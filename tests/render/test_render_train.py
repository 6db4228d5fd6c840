"""Training on a tiny synthetic person: 2 steps, resume, and the FaceRenderer runtime."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar.io.files import read_json
from avatar.render.model import RendererConfig
from avatar.render.data import driven_meshes, load_person_geometry
from avatar.render.renderer import FaceRenderer
from avatar.render.store import load_weights
from tests.synthetic import make_synthetic_person
from avatar.render.train import train_renderer
from avatar.video.reader import VideoReader

CROP = 128
SMALL = RendererConfig(texture_size=64, texture_levels=2, channels=(8, 12, 16, 16))


@pytest.fixture(scope="module")
def person(tmp_path_factory) -> Path:
    return make_synthetic_person(tmp_path_factory.mktemp("render") / "synth", n_frames=20, size=160)


def _train(person, run_dir, steps, **kw):
    return train_renderer(person, minutes=0, steps=steps, device="cpu", run_dir=run_dir,
                          crop_size=CROP, batch_size=2, checkpoint_every=100, progress=False,
                          model_config=SMALL, **kw)


@pytest.fixture(scope="module")
def trained(person, tmp_path_factory):
    """A copy of the person with a renderer trained for 2 steps: (folder, run dir, metrics)."""
    root = tmp_path_factory.mktemp("trained")
    folder = root / "p"
    shutil.copytree(person, folder)
    return folder, root / "run", _train(folder, root / "run", 2)


def test_two_steps_write_run_folder_weights_and_person_config(trained):
    folder, run, metrics = trained
    assert metrics["step"] == 2 and metrics["holdout_frames"] == 3       # last 15 % of 20 frames
    assert 5 < metrics["psnr"] < 60 and 0 < metrics["ssim"] <= 1
    for name in ("config.json", "checkpoint.safetensors", "curve.png", "samples.png", "metrics.json"):
        assert (run / name).stat().st_size > 0, name
    config = read_json(folder / "person.json")
    assert config["renderer"]["renderer"]["crop_size"] == CROP
    assert config["metrics"]["renderer_holdout"]["step"] == 2
    assert load_weights(folder / "renderer.safetensors").config.crop_size == CROP


def test_resume_continues_step_count_loss_and_weights(person, tmp_path):
    straight = _train(person, tmp_path / "a", 4, write_person=False)
    _train(person, tmp_path / "b", 2, write_person=False)
    resumed = _train(person, tmp_path / "b", 4, write_person=False)
    assert straight["step"] == resumed["step"] == 4
    state_a = read_json(tmp_path / "a" / "metrics.json")
    state_b = read_json(tmp_path / "b" / "metrics.json")
    assert state_a["psnr"] == pytest.approx(state_b["psnr"], abs=0.05)
    from avatar.render.model import DeferredRenderer
    from avatar.render.store import load_checkpoint
    from avatar.render.train import make_optimizer
    models = []
    for run in ("a", "b"):
        m = DeferredRenderer(load_weights_config(tmp_path / run))
        state = load_checkpoint(tmp_path / run / "checkpoint.safetensors", m, make_optimizer(m))
        models.append((m, state))
    (ma, sa), (mb, sb) = models
    assert sa["step"] == sb["step"] == 4
    assert [h[0] for h in sb["history"]] == [2, 4]        # loss history continued across the resume
    assert [h[0] for h in sa["history"]] == [4]
    np.testing.assert_allclose(sa["history"][0][1], np.mean([h[1] for h in sb["history"]]), rtol=1e-3)
    for (k, a), b in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k


def load_weights_config(run_dir):
    from avatar.render.model import RendererConfig
    return RendererConfig.from_dict(read_json(run_dir / "config.json")["renderer"])


def test_face_renderer_changes_only_the_lower_face(trained):
    folder = trained[0]
    renderer = FaceRenderer.load(folder, device="cpu")
    _, track, poses, model = load_person_geometry(folder)
    meshes = driven_meshes(model, poses, track.expressions())[:3]
    frames = np.stack([f for _, f in zip(range(3), VideoReader(folder / "target.mp4"))])
    out = renderer.render(meshes, frames, track.crop_boxes[:3])
    assert out.shape == frames.shape and out.dtype == np.uint8
    changed = np.abs(out.astype(int) - frames).sum(-1) > 0
    box = track.crop_boxes[0]
    band_top = box[1] + (box[3] - box[1]) * 3 / 8
    assert changed[0].any()
    assert not changed[0][: int(band_top) - 1].any()          # above the band: untouched
    rows = np.nonzero(changed[0].any(1))[0]
    assert rows.min() > meshes[0, 1, 1] - (box[3] - box[1]) / 10   # starts near the nose tip
    again = renderer.render(meshes, frames, track.crop_boxes[:3])
    assert np.array_equal(out, again)
    single = renderer.render(meshes[1:2], frames[1:2], track.crop_boxes[1:2])
    assert np.abs(single[0].astype(int) - out[1]).max() <= 1                   # batch-independent


def test_checkpoint_interval_scales_with_the_run(person, tmp_path):
    """Issue 14 case 14: a 40-step run checkpoints every 10 steps, not every 100."""
    import json
    from safetensors import safe_open
    from avatar.render.train import checkpoint_interval
    assert checkpoint_interval(40) == 10 and checkpoint_interval(3000) == 100
    assert checkpoint_interval(None) == 100 and checkpoint_interval(5) == 10
    run = tmp_path / "run"
    folder = tmp_path / "p"
    shutil.copytree(person, folder)
    train_renderer(folder, minutes=0, steps=12, device="cpu", run_dir=run, crop_size=CROP,
                   batch_size=2, progress=False, model_config=SMALL, mouth_stage_steps=0)
    assert read_json(run / "config.json")["checkpoint_every"] == 10
    with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["step"] == 12
