"""Session 7 of the lips window: the source's mesh warp refined by optical flow (flow.py), the
teeth atlas (a real frame's upper teeth kept in the renderer file) and the OpenCV erosion."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avatar.render.compose import erode
from avatar.render.flow import FLOW_LIMIT, refine_positions
from avatar.render.model import RendererConfig
from avatar.render.store import load_weights, save_weights
from avatar.render.teeth import ATLAS_SHAPE, atlas_grid, atlas_positions, teeth_vertices
from avatar.render.train import train_renderer
from avatar.render.train_mouth import (bake_teeth_atlas, person_mouth_samples, train_mouth_stage,
                                       with_mouth_stage)
from tests.synthetic import make_synthetic_person

SMALL = RendererConfig(texture_size=64, texture_levels=2, channels=(8, 12, 16, 16),
                       mouth_channels=(8, 8, 8, 8))


@pytest.fixture(scope="module")
def person(tmp_path_factory):
    folder = make_synthetic_person(tmp_path_factory.mktemp("reg") / "synth", n_frames=20, size=192)
    train_renderer(folder, minutes=0, steps=2, device="cpu", run_dir=folder.parent / "run1",
                   crop_size=128, batch_size=2, progress=False, model_config=SMALL, mouth_stage_steps=0)
    return folder


def test_erode_is_pytorchs_max_pool_erosion_exactly():
    gen = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        m = (torch.rand(3, 1, 40, 57, generator=gen) > p).float()
        assert torch.equal(erode(m, 2), -F.max_pool2d(-m, 5, 1, 2))
        with torch.inference_mode():
            assert torch.equal(erode(m, 1), -F.max_pool2d(-m, 3, 1, 1))


def _texture(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((h // 6, w // 6, 3)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)


def test_flow_moves_source_positions_onto_a_shifted_reference():
    """The source is the reference shifted by (2, 1) pixels; the mesh warp (identity positions)
    misses that and the flow finds it."""
    ref = _texture()
    src = np.roll(ref, (1, 2), axis=(0, 1))
    h, w = ref.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    pos = torch.from_numpy(np.stack([gx, gy], -1))[None]
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    out = refine_positions(pos, to_t(src), to_t(ref))
    inner = (out - pos)[0, 16:-16, 16:-16]
    assert abs(float(inner[..., 0].median()) - 2) < 0.3 and abs(float(inner[..., 1].median()) - 1) < 0.3
    assert float((out - pos).norm(dim=-1).max()) <= FLOW_LIMIT + 1e-4
    same = refine_positions(pos, to_t(ref), to_t(ref))
    assert float((same - pos)[0, 16:-16, 16:-16].abs().max()) < 0.2


def test_atlas_positions_agree_with_the_rasterized_teeth_uvs():
    """A texel's position (atlas_positions), rasterized UVs at that position and atlas_grid
    lead back to the same texel."""
    from avatar.face.mesh import canonical_mesh
    from avatar.render.raster import rasterize
    from avatar.render.teeth import teeth_template
    mesh = canonical_mesh().vertices[None].astype(np.float32)
    place = mesh * np.float32([30, -30, -30]) + np.float32([200, 40, 0])     # pixels, y down
    teeth = teeth_vertices(place)
    _, faces, uvs, n_upper = teeth_template()
    frags = rasterize(torch.from_numpy(teeth), torch.as_tensor(faces[:20]), torch.as_tensor(uvs), (260, 400))
    pos = atlas_positions(teeth, ATLAS_SHAPE)[0]
    rows, cols = ATLAS_SHAPE
    texel = np.stack(np.mgrid[0:rows, 0:cols], -1)[4:-4:5, 6:-6:7].reshape(-1, 2)
    px = np.floor(pos[texel[:, 0], texel[:, 1]]).astype(int)
    hit = frags.mask[0, px[:, 1], px[:, 0]].numpy()
    assert hit.mean() > 0.9
    g = atlas_grid(frags.uv[0, px[:, 1], px[:, 0]][None])[0].numpy()
    back = np.stack([(g[:, 1] + 1) / 2 * rows - 0.5, (g[:, 0] + 1) / 2 * cols - 0.5], 1)
    assert np.abs(back - texel)[hit].max() < 3          # within the pixel the texel falls in


def test_teeth_atlas_is_baked_trained_saved_and_used(person, tmp_path):
    """Training bakes the atlas from an open-mouth frame, 2 steps with flow and atlas run, the
    atlas survives save/load, and a closed source mouth then still gets upper teeth."""
    from avatar.face.mesh import LIPS_INNER
    from avatar.render.renderer import mouth_geometry, source_detail, window_topology
    base = load_weights(person / "renderer.safetensors")
    samples = person_mouth_samples(person, base, progress=False)
    model = _with_atlas(with_mouth_stage(base, samples.shape, samples.scale))
    assert model.config.source_flow and model.config.teeth_atlas == ATLAS_SHAPE
    assert float(model.mouth.teeth_atlas.abs().sum()) == 0
    train_mouth_stage(model, samples, tmp_path / "run", steps=2, progress=False)
    atlas = model.mouth.teeth_atlas
    assert float(atlas[3].mean()) > 0.2 and 0 <= float(atlas[:3].min()) and float(atlas[:3].max()) <= 1
    save_weights(tmp_path / "r.safetensors", model.cpu().eval())
    again = load_weights(tmp_path / "r.safetensors")
    assert torch.allclose(again.mouth.teeth_atlas, atlas, atol=1e-3)
    verts = torch.from_numpy(samples.vertices)
    window = torch.from_numpy(samples.real).permute(0, 3, 1, 2).float() / 255
    raster = mouth_geometry(again, verts, window.shape[2], window.shape[3])
    closed = verts.clone()
    closed[:, list(LIPS_INNER), 1] = closed[:, list(LIPS_INNER), 1].mean(1, keepdim=True)
    _, n_surface = window_topology(again.config)
    upper = raster.mask & (raster.face >= n_surface + 20) & (raster.face < n_surface + 40)
    assert upper.sum() > 20
    with torch.inference_mode():
        _, _, valid = source_detail(again, raster, closed, window)
    assert float(valid[:, 0][upper].mean()) > 0.3


def _with_atlas(model):
    """The same second stage with the flow and a teeth atlas (not the defaults new persons get)."""
    from dataclasses import replace
    from avatar.render.model import DeferredRenderer
    out = DeferredRenderer(replace(model.config, teeth_atlas=ATLAS_SHAPE, source_flow=True))
    out.load_state_dict(model.state_dict(), strict=False)
    for name, p in out.named_parameters():
        p.requires_grad_(name.startswith("mouth."))
    return out


def test_new_persons_get_neither_session7_option(person):
    base = load_weights(person / "renderer.safetensors")
    samples = person_mouth_samples(person, base, progress=False)
    model = with_mouth_stage(base, samples.shape, samples.scale)
    assert not model.config.source_flow and model.mouth.teeth_atlas is None


def test_bake_picks_a_frame_that_shows_the_teeth(person):
    base = load_weights(person / "renderer.safetensors")
    samples = person_mouth_samples(person, base, progress=False)
    model = _with_atlas(with_mouth_stage(base, samples.shape, samples.scale))
    frame = bake_teeth_atlas(model, samples)
    assert 0 <= frame < samples.holdout_start and samples.trainable[frame]
