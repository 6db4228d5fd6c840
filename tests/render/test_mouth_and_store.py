"""Mouth patch topology/UVs, neural texture sampling, and safe loading of renderer files."""
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar.errors import AvatarError
from avatar.face.mesh import LIPS_INNER, canonical_mesh
from avatar.render.model import DeferredRenderer, NeuralTexture, RendererConfig
from avatar.render.mouth import lip_strip, mouth_patch_uvs, with_mouth_patch
from avatar.render.raster import rasterize
from avatar.render.store import _save, load_checkpoint, load_weights, save_checkpoint, save_weights
from avatar.render.train import make_optimizer

TINY = RendererConfig(crop_size=128, texture_size=32, texture_levels=2, channels=(8, 8, 8, 8))


def test_mouth_patch_replaces_lip_strip_and_has_free_uv_region():
    mesh = canonical_mesh()
    faces, uvs, verts = with_mouth_patch(mesh.faces, mesh.uvs, torch.zeros(2, 468, 3))
    assert lip_strip(mesh.faces).sum() == 18
    assert faces.shape == (898 - 18 + 20, 3) and uvs.shape == (489, 2) and verts.shape == (2, 489, 3)
    assert faces.max() == 488 and not lip_strip(faces[:-20]).any()
    # the patch's UV region is not covered by any face triangle of the UV layout
    size = 256
    layout = torch.tensor(np.c_[uvs * size, np.zeros(len(uvs))], dtype=torch.float32)[None]
    face_cover = rasterize(layout, torch.tensor(faces[:-20]), torch.tensor(uvs), size).mask[0]
    patch_cover = rasterize(layout, torch.tensor(faces[-20:]), torch.tensor(uvs), size).mask[0]
    assert patch_cover.sum() > 500 and not (face_cover & patch_cover).any()
    # the appended ring copies follow LIPS_INNER and the centre is their mean
    v = torch.randn(1, 468, 3)
    _, _, pv = with_mouth_patch(mesh.faces, mesh.uvs, v)
    assert torch.equal(pv[0, 468:488], v[0, list(LIPS_INNER)])
    assert torch.allclose(pv[0, 488], v[0, list(LIPS_INNER)].mean(0))
    assert mouth_patch_uvs()[5, 1] < mouth_patch_uvs()[15, 1]      # upper lip on top


def test_masked_texture_sampling_equals_dense_sampling():
    tex = NeuralTexture(32, 4, 3)
    for p in tex.parameters():
        p.data.normal_()
    uv = torch.rand(2, 10, 12, 2)
    mask = torch.rand(2, 10, 12) > 0.4
    assert torch.allclose(tex(uv, mask), tex(uv) * mask[:, None], atol=1e-6)


def _model(config=TINY):
    torch.manual_seed(1)
    return DeferredRenderer(config)


def test_weights_roundtrip_and_tamper_detection(tmp_path: Path):
    model = _model()
    path = tmp_path / "renderer.safetensors"
    save_weights(path, model, half=False)
    loaded = load_weights(path)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF                                        # change one weight byte
    path.write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="checksum"):
        load_weights(path)
    path.write_bytes(bytes(data[:200]))                       # truncated
    with pytest.raises(AvatarError, match="damaged"):
        load_weights(path)
    with pytest.raises(AvatarError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")


def test_wrong_shapes_are_refused(tmp_path: Path):
    import json
    model = _model()
    state = dict(model.state_dict())
    name = "unet.head.weight"
    state[name] = torch.zeros(5, 8, 3, 3)                   # wrong shape, valid checksum
    path = tmp_path / "bad.safetensors"
    _save(path, state, {"format": "avatar-renderer-1", "config": json.dumps(TINY.to_dict())})
    with pytest.raises(AvatarError, match="shape"):
        load_weights(path)
    other = _model(RendererConfig(crop_size=128, texture_size=32, texture_levels=2, channels=(8, 8, 8, 16)))
    ckpt = tmp_path / "ckpt.safetensors"
    save_checkpoint(ckpt, other, make_optimizer(other), {"step": 3})
    with pytest.raises(AvatarError, match="another renderer config"):
        load_checkpoint(ckpt, model, make_optimizer(model))


def test_checkpoint_restores_optimizer_state(tmp_path: Path):
    model = _model()
    opt = make_optimizer(model)
    model(torch.rand(1, 80, 128, 2), torch.ones(1, 80, 128, dtype=torch.bool),
          torch.rand(1, 3, 80, 128), torch.zeros(1, 1, 80, 128)).mean().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model, opt, {"step": 1, "history": [[1, 0.5]]})
    fresh = _model()
    fresh_opt = make_optimizer(fresh)
    state = load_checkpoint(tmp_path / "c.safetensors", fresh, fresh_opt)
    assert state == {"step": 1, "history": [[1, 0.5]]}
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for i in a:
        assert torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"])
