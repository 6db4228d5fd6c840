"""Session 7 training options: the per-sequence correlation loss, smoothed targets, the temporal
convolution stack (its reach, a checkpoint round trip) and the feature augmentations."""
from __future__ import annotations

import numpy as np
import torch

from avatar.expression import Audio2ExpressionNet, NetConfig, load_audio2expr, save_audio2expr
from avatar.expression.train import TrainConfig, _augment_features, sequence_corr_loss, smooth_targets


def test_corr_loss_known_answers():
    t = torch.linspace(0, 6.28, 50)
    y = torch.sin(t)[None].repeat(2, 1)
    assert float(sequence_corr_loss(3 * y + 1, y)) < 1e-4                 # r = 1, scale-free
    assert abs(float(sequence_corr_loss(-y, y)) - 2.0) < 1e-4             # r = -1
    flat = torch.zeros(1, 50)
    mixed = sequence_corr_loss(torch.cat([-y[:1], torch.randn(1, 50)]), torch.cat([y[:1], flat]))
    assert abs(float(mixed) - 2.0) < 1e-4                                # the still sequence is left out


def test_corr_loss_has_gradient():
    p = torch.randn(3, 20, requires_grad=True)
    sequence_corr_loss(p, torch.randn(3, 20)).backward()
    assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_smooth_targets_removes_jitter_keeps_slow_motion():
    rng = np.random.default_rng(0)
    slow = np.sin(np.linspace(0, 4 * np.pi, 200))[:, None].astype(np.float32)
    noisy = slow + 0.3 * rng.standard_normal((200, 1)).astype(np.float32)
    assert smooth_targets(noisy, 0) is noisy
    out = smooth_targets(noisy, 1.5)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.abs(out - slow).mean() < 0.6 * np.abs(noisy - slow).mean()


def cfg(layers: int) -> NetConfig:
    return NetConfig(feature_dim=12, window=8, channels=8, latent=8, context=2, n_out=5, dropout=0.0,
                     temporal_layers=layers)


def test_temporal_stack_reach():
    assert cfg(0).reach == 2 and cfg(3).reach == 2 + 1 + 2 + 4
    torch.manual_seed(0)
    net = Audio2ExpressionNet(cfg(3)).eval()
    x = torch.randn(1, 40, 8, 12)
    far, near = x.clone(), x.clone()
    far[0, 20 + cfg(3).reach + 1] += 5.0
    near[0, 20 + cfg(3).reach] += 5.0
    with torch.no_grad():
        base, f, n = net(x)[0, 20], net(far)[0, 20], net(near)[0, 20]
    assert torch.allclose(base, f, atol=1e-6)
    assert not torch.allclose(base, n, atol=1e-4)


def test_checkpoint_round_trip_with_stack(tmp_path):
    torch.manual_seed(1)
    net = Audio2ExpressionNet(NetConfig(feature_dim=80, window=16, channels=8, latent=8, context=2,
                                        n_out=27, temporal_layers=2)).eval()
    save_audio2expr(tmp_path, net, "logmel80", np.full(52, 0.1), np.full(52, 0.2))
    model = load_audio2expr(tmp_path)
    assert model.net.cfg.temporal_layers == 2
    x = torch.randn(1, 10, 16, 80)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x))


def test_augmentations_mask_columns_and_shift_loudness_only():
    x = torch.ones(4, 6, 8, 10)
    c = TrainConfig(feature_noise=0.0, time_mask_prob=0.0, dim_mask_prob=0.5, gain_jitter=0.3)
    out = _augment_features(x, c, np.random.default_rng(0))
    body = out[..., :-1]
    assert set(torch.unique(body).tolist()) <= {0.0, 1.0} and float(body.mean()) < 0.9
    loud = out[..., -1]
    assert float((loud - 1).abs().max()) <= 0.3 + 1e-6 and float((loud - 1).abs().max()) > 0
    assert torch.equal(loud, loud[:, :1, :1].expand_as(loud))          # one shift per sequence
    same = _augment_features(x, TrainConfig(feature_noise=0.0, time_mask_prob=0.0), np.random.default_rng(0))
    assert torch.equal(same, x)


def _plain_and_changed(tmp_path, seed: int, **option):
    """Weights of one tiny network saved plainly (folder a) and with an output option (b)."""
    from avatar.types import SpeechFeatures
    torch.manual_seed(seed)
    net = Audio2ExpressionNet(NetConfig(feature_dim=80, window=16, channels=8, latent=8, context=2, n_out=27))
    save_audio2expr(tmp_path / "a", net, "logmel80", np.full(52, 0.3), np.full(52, 0.2))
    save_audio2expr(tmp_path / "b", net, "logmel80", np.full(52, 0.3), np.full(52, 0.2), **option)
    feats = SpeechFeatures(np.random.default_rng(0).standard_normal((300, 80)).astype(np.float32), 100.0, "logmel80")
    return tuple(load_audio2expr(tmp_path / k).predict_features(feats, 25.0, 75).weights for k in "ab")


def test_output_smoothing_in_checkpoint(tmp_path):
    import json
    import pytest
    from avatar.errors import AvatarError
    from avatar.expression.checkpoint import smooth_in_time
    raw, smooth = _plain_and_changed(tmp_path, 2, output_smooth_s=0.08)
    assert np.abs(np.diff(smooth, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()
    assert np.allclose(smooth.mean(0), raw.mean(0), atol=0.02)
    z = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    assert smooth_in_time(z, 0.0) is z
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    config["output_smooth_s"] = -1
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AvatarError, match="incomplete or inconsistent"):
        load_audio2expr(tmp_path / "b")


def test_delay_frames():
    from avatar.expression.checkpoint import delay_frames
    z = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert delay_frames(z, 0) is z
    d = delay_frames(z, 2)
    assert d.shape == z.shape
    assert np.array_equal(d[:3], z[[0, 0, 0]]) and np.array_equal(d[2:], z[:4])
    assert np.array_equal(delay_frames(z, 10), np.repeat(z[:1], 6, 0))


def test_output_delay_in_checkpoint(tmp_path):
    raw, late = _plain_and_changed(tmp_path, 3, output_delay_s=0.08)
    assert np.allclose(late[2:], raw[:-2]) and np.allclose(late[:2], raw[:1])


def test_hold_for_extends_closures_forward():
    from avatar.expression.checkpoint import hold_for
    m = np.array([0, 1, 1, 0.5, 0, 0, 1, 0, 0], np.float32)
    assert np.array_equal(hold_for(m, 0), m)
    assert np.array_equal(hold_for(m, 1), np.array([0, 1, 1, 1, 0.5, 0, 1, 1, 0], np.float32))


def test_train_audio2expr_options():
    import argparse
    import pytest
    from avatar.errors import AvatarError
    from pipelines.train_audio2expr import add_arguments, check_options
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([])
    assert args.output_delay_s == 0.04 and args.corr_weight == 0.0 and args.temporal_layers == 0
    check_options(args)
    with pytest.raises(AvatarError, match="output-delay-s"):
        check_options(p.parse_args(["--output-delay-s", "-0.1"]))
    with pytest.raises(AvatarError, match="output-smooth-s"):
        check_options(p.parse_args(["--output-smooth-s", "2"]))
