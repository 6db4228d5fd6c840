"""The lips window (second stage at frame resolution), its losses and the mouth-box metrics."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avatar.render.compose import crop_window, mouth_origins, paste_window
from avatar.render.gan import PatchDiscriminator, feature_matching, hinge_d, hinge_g, laplacian_l1
from avatar.render.metrics import MouthScores, mouth_box, mouth_frame_scores
from avatar.render.model import RendererConfig
from avatar.render.renderer import FaceRenderer
from avatar.render.store import load_weights
from tests.synthetic import make_synthetic_person
from avatar.render.train import train_renderer
from avatar.render.train_mouth import (LOSSES, person_mouth_samples, train_mouth_stage, window_geometry,
                                       with_mouth_stage)

SMALL = RendererConfig(texture_size=64, texture_levels=2, channels=(8, 12, 16, 16),
                       mouth_channels=(8, 8, 8, 8))


def _detailed(seed=0, shape=(60, 90, 3)):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (15, 22, 3)).astype(np.uint8), shape[1::-1])
    return np.clip(base.astype(np.int16) + rng.integers(-30, 30, shape), 0, 255).astype(np.uint8)


# --- metrics with known answers ----------------------------------------------------------------

def test_identical_copy_scores_exactly_one_and_a_blurred_copy_less():
    real = _detailed()
    box = (5, 5, 85, 55)
    same = mouth_frame_scores(real.copy(), real, box)
    assert same["detail"] == 1.0 and same["hf"] == 1.0 and same["psnr"] > 90
    blurred = mouth_frame_scores(cv2.GaussianBlur(real, (0, 0), 1.5), real, box)
    assert blurred["detail"] < 0.3 and blurred["hf"] < 0.8


def test_unsharp_mask_raises_detail_but_lowers_mouth_psnr():
    """The control: sharpening a soft output games the detail ratio but not the mouth PSNR."""
    real = _detailed(1)
    box = (0, 0, 90, 60)
    soft = cv2.GaussianBlur(real, (0, 0), 1.0)
    sharpened = cv2.addWeighted(soft, 2.5, cv2.GaussianBlur(soft, (0, 0), 2.0), -1.5, 0)
    a, b = mouth_frame_scores(soft, real, box), mouth_frame_scores(sharpened, real, box)
    assert b["detail"] > a["detail"] and b["psnr"] < a["psnr"]


def test_flicker_ratio_is_one_for_the_real_clip_and_above_one_for_added_jitter():
    rng = np.random.default_rng(2)
    frames = [np.roll(_detailed(3), k, axis=1) for k in range(6)]
    box = (10, 5, 80, 55)
    same, noisy = MouthScores(), MouthScores()
    for f in frames:
        same.add(f.copy(), f, box)
        jitter = np.clip(f.astype(np.int16) + rng.integers(-25, 25, f.shape), 0, 255).astype(np.uint8)
        noisy.add(jitter, f, box)
    assert same.summary()["mouth_flicker_ratio"] == 1.0
    assert noisy.summary()["mouth_flicker_ratio"] > 1.1
    assert same.summary()["mouth_frames"] == 6


def test_mouth_box_grows_the_lips_box_and_stays_inside_the_frame():
    lips = np.array([[10.0, 20.0], [50.0, 40.0]])
    assert mouth_box(lips, (100, 100, 3)) == (3, 16, 57, 43)
    assert mouth_box(lips - 10, (100, 100, 3))[:2] == (0, 6)


# --- the window is cut and pasted without resampling at scale 1 ------------------------------

def test_window_cut_and_paste_at_scale_one_is_exact():
    frame = _detailed(4, (120, 160, 3))
    window = crop_window(frame, (37.0, 21.0), 1.0, (48, 64))
    assert np.array_equal(window, frame[21:69, 37:101])
    other = np.zeros_like(frame)
    pasted = paste_window(other, window.astype(np.float32), np.ones((48, 64), np.float32), (37.0, 21.0), 1.0)
    assert np.array_equal(pasted[21:69, 37:101], window)
    assert not pasted[:21].any() and not pasted[:, 101:].any()


def test_window_geometry_is_frame_resolution_for_small_lips_and_capped_for_large():
    lips = np.zeros((3, 468, 3), np.float32)
    from avatar.face.mesh import LIPS_OUTER
    lips[:, list(LIPS_OUTER), 0] = np.linspace(0, 80, len(LIPS_OUTER))
    (h, w), scale = window_geometry(lips)
    assert scale == 1.0 and w % 16 == 0 and h % 16 == 0 and w >= 1.9 * 80 and h >= 1.4 * 80
    (h2, w2), scale2 = window_geometry(lips * 4)
    assert scale2 < 1 and w2 <= 1.9 * 112 + 16
    origins = mouth_origins(lips, (h, w), 1.0)
    assert np.array_equal(origins, np.round(origins))


# --- losses and the discriminator ------------------------------------------------------------

def test_discriminator_and_losses_take_two_steps():
    torch.manual_seed(0)
    disc = PatchDiscriminator(6, width=8)
    opt = torch.optim.Adam(disc.parameters(), 1e-3)
    cond, real = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    fake = torch.rand(2, 3, 32, 48, requires_grad=True)
    for _ in range(2):
        loss = hinge_d(disc(cond, real)[0], disc(cond, fake.detach())[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    logits, feats = disc(cond, fake)
    _, real_feats = disc(cond, real)
    g = hinge_g(logits) + feature_matching(feats, real_feats) + laplacian_l1(fake, real, torch.ones(2, 1, 32, 48))
    g.backward()
    assert torch.isfinite(g) and fake.grad.abs().sum() > 0
    assert laplacian_l1(real, real, torch.ones(2, 1, 32, 48)) == 0


# --- the second stage on the synthetic person -------------------------------------------------

@pytest.fixture(scope="module")
def person_with_first_stage(tmp_path_factory) -> Path:
    folder = make_synthetic_person(tmp_path_factory.mktemp("mouth") / "synth", n_frames=20, size=192)
    train_renderer(folder, minutes=0, steps=2, device="cpu", run_dir=folder.parent / "run1",
                   crop_size=128, batch_size=2, progress=False, model_config=SMALL, mouth_stage_steps=0)
    return folder


def test_fresh_second_stage_is_the_identity(person_with_first_stage):
    base = load_weights(person_with_first_stage / "renderer.safetensors")
    samples = person_mouth_samples(person_with_first_stage, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    meshes, frames, boxes = _frames(person_with_first_stage)
    first = FaceRenderer(base, torch.device("cpu")).render(meshes, frames, boxes)
    both = FaceRenderer(model, torch.device("cpu")).render(meshes, frames, boxes)
    assert np.abs(both.astype(int) - first).max() <= 1


def test_second_stage_trains_two_steps_resumes_and_leaves_the_first_stage_alone(person_with_first_stage, tmp_path):
    base = load_weights(person_with_first_stage / "renderer.safetensors")
    samples = person_mouth_samples(person_with_first_stage, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = tmp_path / "run2"
    m = train_mouth_stage(model, samples, run, steps=2, losses=LOSSES, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("mouth."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("mouth."))
    assert m["step"] == 2 and m["frames"] == 3
    assert set(m["with_mouth_stage"]) >= {"mouth_psnr", "mouth_detail_ratio", "mouth_hf_ratio"}
    for name in ("checkpoint.safetensors", "discriminator.safetensors", "samples.png", "metrics.json"):
        assert (run / name).stat().st_size > 0, name
    again = with_mouth_stage(base, samples.shape, samples.scale)
    m2 = train_mouth_stage(again, samples, run, steps=3, losses=LOSSES, progress=False)
    assert m2["step"] == 3


def test_train_renderer_ships_both_stages_into_the_person(person_with_first_stage, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(person_with_first_stage, folder)
    train_renderer(folder, minutes=0, steps=2, device="cpu", run_dir=tmp_path / "run",
                   crop_size=128, batch_size=2, progress=False, model_config=SMALL, mouth_stage_steps=2)
    model = load_weights(folder / "renderer.safetensors")
    assert model.mouth is not None and model.config.has_mouth_stage
    meshes, frames, boxes = _frames(folder)
    out = FaceRenderer(model, torch.device("cpu")).render(meshes, frames, boxes)
    assert out.shape == frames.shape


def _frames(folder: Path):
    from avatar.render.data import driven_meshes, load_person_geometry
    from avatar.video.reader import VideoReader
    _, track, poses, face_model = load_person_geometry(folder)
    meshes = driven_meshes(face_model, poses, track.expressions())[:4]
    frames = np.stack([f for _, f in zip(range(4), VideoReader(folder / "target.mp4"))])
    return meshes, frames, track.crop_boxes[:4].astype(np.float32)


def test_source_detail_moves_real_pixels_by_the_mesh(person_with_first_stage):
    """A source that is the frame itself, with its own mesh, warps onto itself; a source shifted
    by 3 pixels (its mesh too) warps back into place."""
    from avatar.render.renderer import mouth_geometry, source_detail
    base = load_weights(person_with_first_stage / "renderer.safetensors")
    samples = person_mouth_samples(person_with_first_stage, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    p = samples.pad
    window = torch.from_numpy(samples.real[:2]).permute(0, 3, 1, 2).float() / 255   # padded
    verts = torch.from_numpy(samples.vertices[:2])
    raster = mouth_geometry(model, verts, window.shape[2], window.shape[3])
    warped, _, valid = source_detail(model, raster, verts, window)
    inner = valid[:, :, p:-p, p:-p] > 0
    assert inner.float().mean() > 0.3
    diff = (warped - window)[:, :, p:-p, p:-p].abs().amax(1, keepdim=True)[inner]
    assert float(diff.median()) < 0.02
    shifted = torch.roll(window, shifts=(3, 3), dims=(2, 3))
    moved = verts.clone()
    moved[..., :2] += 3
    back, _, valid2 = source_detail(model, raster, moved, shifted)
    inner2 = valid2[:, :, p:-p, p:-p] > 0
    assert float((back - window)[:, :, p:-p, p:-p].abs().amax(1, keepdim=True)[inner2].median()) < 0.02


def test_source_detail_takes_teeth_and_mouth_interior_only_from_an_open_source_mouth(person_with_first_stage):
    """The window's teeth and mouth interior take the source's pixels where that point lies
    inside the source's own mouth opening: all of them from the open mouth itself, none from
    the same frame with its inner lips closed."""
    from avatar.face.mesh import LIPS_INNER
    from avatar.render.renderer import mouth_geometry, source_detail, window_topology
    base = load_weights(person_with_first_stage / "renderer.safetensors")
    samples = person_mouth_samples(person_with_first_stage, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    window = torch.from_numpy(samples.real).permute(0, 3, 1, 2).float() / 255
    verts = torch.from_numpy(samples.vertices)
    raster = mouth_geometry(model, verts, window.shape[2], window.shape[3])
    _, n_surface = window_topology(model.config)
    deep = raster.mask & (raster.face >= n_surface)
    assert deep.sum() > 50           # the synthetic person's mouth opens
    _, _, valid = source_detail(model, raster, verts, window)
    assert float(valid[:, 0][deep].mean()) > 0.9
    closed = verts.clone()
    ring = closed[:, list(LIPS_INNER), 1]
    closed[:, list(LIPS_INNER), 1] = ring.mean(1, keepdim=True)
    _, _, valid_closed = source_detail(model, raster, closed, window)
    assert float(valid_closed[:, 0][deep].mean()) == 0.0
    surface = raster.mask & (raster.face < n_surface) & (raster.face >= 0)
    assert float(valid_closed[:, 0][surface].mean()) > 0.9


def test_inside_polygon_on_a_square_and_a_flat_ring():
    from avatar.render.compose import inside_polygon
    square = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]])
    pts = torch.tensor([[[5.0, 5.0], [11.0, 5.0], [-1.0, 2.0], [9.9, 0.1]]])
    assert inside_polygon(pts, square).tolist() == [[True, False, False, True]]
    flat = torch.tensor([[[0.0, 5.0], [10.0, 5.0], [10.0, 5.0], [0.0, 5.0]]])
    assert not inside_polygon(pts, flat).any()


def _two_step_renderer(person, tmp_path):
    """(FaceRenderer with a second stage trained 2 steps, meshes, frames, boxes of the person)."""
    base = load_weights(person / "renderer.safetensors")
    samples = person_mouth_samples(person, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    train_mouth_stage(model, samples, tmp_path / "run", steps=2, progress=False)
    return (FaceRenderer(model, torch.device("cpu")), *_frames(person))


def test_face_renderer_uses_the_frames_own_meshes_for_detail(person_with_first_stage, tmp_path):
    r, meshes, frames, boxes = _two_step_renderer(person_with_first_stage, tmp_path)
    plain = r.render(meshes, frames, boxes)
    with_detail = r.render(meshes, frames, boxes, frame_meshes=meshes)
    assert plain.shape == with_detail.shape and not np.array_equal(plain, with_detail)


def test_a_source_frame_elsewhere_in_the_picture_gives_the_same_detail(person_with_first_stage, tmp_path):
    """The detail source's window is cut around the source's own lips, not where the rendered
    frame's lips are: a source whose face sits 30 px further right and 20 px lower (evaluation
    takes sources from other times of the clip, where the head has moved) gives the same frame."""
    r, meshes, frames, boxes = _two_step_renderer(person_with_first_stage, tmp_path)
    here = r.render(meshes, frames, boxes, frame_meshes=meshes, source_frames=frames)
    moved_frames = np.roll(frames, (20, 30), axis=(1, 2))
    moved_meshes = meshes + np.array([30, 20, 0], np.float32)
    moved = r.render(meshes, frames, boxes, frame_meshes=moved_meshes, source_frames=moved_frames)
    plain = r.render(meshes, frames, boxes)
    assert not np.array_equal(plain, here)
    assert np.abs(moved.astype(int) - here).max() <= 1
