"""The audio2expr network: trains on synthetic data, silence -> rest pose, checkpoint round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar.errors import AvatarError
from avatar.expression import Audio2ExpressionNet, NetConfig, load_audio2expr, save_audio2expr
from avatar.expression.data import ClipData, Variant
from avatar.expression.evaluate import best_offset, clip_metrics
from avatar.expression.train import TrainConfig, fit_normalizer, train_network
from avatar.types import BLENDSHAPE_NAMES, JAW_OPEN, MOUTH_BLENDSHAPES, N_BLENDSHAPES, Speech, SpeechFeatures

FPS = 25.0
RATE = 100.0


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets train faster on one thread, and the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet_features(seconds: float = 1.0) -> SpeechFeatures:
    rng = np.random.default_rng(5)
    n = int(seconds * RATE)
    return SpeechFeatures(np.full((n, 80), -8.0, np.float32) + 0.05 * rng.standard_normal((n, 80)).astype(np.float32),
                          RATE, "logmel80")


def synthetic_clip(seed: int, seconds: float = 8.0) -> ClipData:
    """Bursts of 'speech' (a band of loud log-mel values) where the jaw opens; silence in between."""
    rng = np.random.default_rng(seed)
    n_feat = int(seconds * RATE)
    voiced = np.zeros(n_feat, bool)
    t = 20
    while t < n_feat - 40:
        length = int(rng.integers(15, 50))
        voiced[t:t + length] = True
        t += length + int(rng.integers(15, 50))
    feats = np.full((n_feat, 80), -8.0, np.float32) + 0.05 * rng.standard_normal((n_feat, 80)).astype(np.float32)
    feats[voiced, 10:40] = -2.0 + 0.3 * rng.standard_normal((voiced.sum(), 30)).astype(np.float32)
    n_frames = int(seconds * FPS)
    frame_voiced = voiced[np.round(np.arange(n_frames) / FPS * RATE).astype(int).clip(0, n_feat - 1)]
    targets = np.full((n_frames, N_BLENDSHAPES), 0.05, np.float32)
    targets[:, JAW_OPEN] = np.where(frame_voiced, 0.5, 0.02) + 0.01 * rng.standard_normal(n_frames)
    speech = Speech(np.zeros(int(seconds * 16000), np.float32), 16000)
    clip = ClipData(f"synthetic{seed}", f"spk{seed}", FPS, targets, speech)
    clip.variants.append(Variant(SpeechFeatures(feats, RATE, "logmel80"), targets, "clean"))
    return clip


def small_config() -> NetConfig:
    return NetConfig(feature_dim=80, window=16, channels=16, latent=8, context=2,
                     n_out=len(MOUTH_BLENDSHAPES), dropout=0.0)


def test_two_training_steps_change_the_weights():
    clips = [synthetic_clip(0), synthetic_clip(1)]
    norm = fit_normalizer(clips)
    torch.manual_seed(0)
    before = Audio2ExpressionNet(small_config()).state_dict()
    net, losses = train_network(clips, small_config(), TrainConfig(steps=2, batch=4, seq_len=8),
                                quiet_features(), norm, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_silence_gives_rest_pose_and_speech_opens_mouth(tmp_path):
    clips = [synthetic_clip(i) for i in range(3)]
    norm = fit_normalizer(clips)
    cfg = TrainConfig(steps=100, batch=8, seq_len=16, lr=3e-3, silence_prob=0.1)
    net, losses = train_network(clips, small_config(), cfg, quiet_features(), norm,
                                progress=False)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    save_audio2expr(tmp_path, net, "logmel80", norm.mean, norm.std)   # no silence gate: the net alone
    model = load_audio2expr(tmp_path)
    assert model.gate_db is None
    silent = Speech(np.zeros(16000 * 2, np.float32), 16000)
    jaw_silent = model.predict(silent, FPS).weights[:, JAW_OPEN]
    test = synthetic_clip(7)
    pred = model.predict_features(test.variants[0].features, FPS, len(test.targets)).weights
    tracked = test.targets[:, JAW_OPEN]
    assert np.corrcoef(pred[:, JAW_OPEN], tracked)[0, 1] > 0.8
    assert jaw_silent.max() < np.median(pred[:, JAW_OPEN])
    assert len(model.predict(silent, 30000 / 1001)) == 60       # ceil(2 s * 29.97)


def test_checkpoint_missing_or_tampered(tmp_path):
    with pytest.raises(AvatarError, match="does not exist"):
        load_audio2expr(tmp_path / "nothing")
    net = Audio2ExpressionNet(small_config())
    save_audio2expr(tmp_path, net, "logmel80", np.zeros(52), np.ones(52))
    load_audio2expr(tmp_path)
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="hash"):
        load_audio2expr(tmp_path)


def test_best_offset_finds_a_known_shift():
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(300), np.ones(5) / 5, "same")
    late = np.roll(x, 3)                     # prediction 3 frames late
    lag, r = best_offset(late, x)
    assert lag == 3 and r > 0.95


def test_clip_metrics_fields():
    t = np.random.default_rng(0).random((100, 52)).astype(np.float32)
    m = clip_metrics(t, t, np.linspace(-40, -10, 100), np.arange(100) < 10)
    assert m["jaw_r"] == pytest.approx(1.0) and m["best_offset_frames"] == 0
    assert m["mouth_mae"] == 0.0 and "silent_rest_fraction_pred_median" in m


def test_shipped_checkpoint_predicts_frames_for_tts():
    from avatar.expression.checkpoint import DEFAULT_DIR
    if not (DEFAULT_DIR / "config.json").is_file():
        pytest.skip("no shipped checkpoint yet")
    from avatar.audio import synthesize
    model = load_audio2expr()
    speech = synthesize("The quick brown fox jumps over the lazy dog.")
    expr = model.predict(speech, 25.0)
    assert len(expr) == int(np.ceil(speech.duration_s * 25.0 - 1e-6))
    assert expr.weights.shape[1] == 52 and np.isfinite(expr.weights).all()
    assert expr.weights[:, JAW_OPEN].std() > 0.01               # the mouth moves
    silent = model.predict(Speech(np.zeros(16000, np.float32), 16000), 25.0).weights[:, JAW_OPEN]
    assert silent.max() < np.median(expr.weights[:, JAW_OPEN])   # digital silence: mouth at rest


def test_speech_gate_closes_pauses():
    from avatar.expression.checkpoint import speech_gate
    feats = quiet_features(4.0)
    values = feats.values.copy()
    values[100:200, 10:40] = -1.0                       # speech from 1 s to 2 s
    gate = speech_gate(SpeechFeatures(values, RATE, "logmel80"), FPS, 100, below_db=30.0)
    assert gate.shape == (100,)
    assert gate[30:45].min() == 1.0                     # 1.2-1.8 s: speech
    assert gate[:15].max() == 0.0 and gate[60:].max() == 0.0


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_speech_gate_closes_every_silent_frame(fps):
    """The gate and the rest-in-silence metric agree on silence: every frame silent_frames calls
    silent is fully closed (gate 0), every other frame is at least partly open, and the ramp
    between them lies on the speech side."""
    from avatar.audio.features import loudness_column
    from avatar.expression.checkpoint import speech_gate
    from avatar.expression.data import silent_frames
    sr, rng = 16000, np.random.default_rng(3)
    samples = 1e-4 * rng.standard_normal(3 * sr).astype(np.float32)
    t = np.arange(sr) / sr
    samples[8000:24000] += 0.3 * np.sin(2 * np.pi * 220 * t[:16000])      # 0.5-1.5 s
    samples[27200:41600] += 0.3 * np.sin(2 * np.pi * 180 * t[:14400])     # 1.7-2.6 s
    speech = Speech(samples, sr)
    n = int(np.ceil(3 * fps))
    feats = SpeechFeatures(loudness_column(samples, 150), 50.0, "whisper_tiny")
    gate = speech_gate(feats, fps, n, below_db=30.0)
    silent = silent_frames(speech, fps, n)
    assert silent.sum() > 20 and (~silent).sum() > 20
    assert gate[silent].max() == 0.0
    assert gate[~silent].min() > 0.0
    edges = np.flatnonzero(np.diff(silent.astype(int)))
    assert len(edges) == 4 and all(0.0 < gate[e + int(silent[e])] < 1.0 for e in edges)


def test_tempo_augmentation_keeps_face_in_sync():
    from avatar.expression.data import resample_targets
    fps, rate = 25.0, 1.1                           # audio played 10 % faster
    t = np.arange(100) / fps
    targets = np.stack([np.sin(t * 3.0)] * 52, 1).astype(np.float32)
    new = resample_targets(targets, fps, rate, n_audio_s=100 / fps / rate)
    assert len(new) == round(100 / rate)
    new_t = np.arange(len(new)) / fps
    np.testing.assert_allclose(new[:, JAW_OPEN], np.sin(new_t * rate * 3.0), atol=0.01)


def phones_of(clip: ClipData) -> tuple:
    """Phones for a synthetic clip: an open vowel wherever the jaw target is open."""
    from avatar.types import PhonemeTiming
    open_ = clip.targets[:, JAW_OPEN] > 0.25
    edges = np.flatnonzero(np.diff(np.r_[0, open_.astype(int), 0]))
    return tuple(PhonemeTiming("AA", a / clip.fps, b / clip.fps) for a, b in zip(edges[::2], edges[1::2]))


def test_screening_finds_offsets_and_drops_unrelated_audio():
    """A clip whose face lags its audio by 3 frames gets offset -3; a clip whose lips do not follow
    its audio is left out of training."""
    from avatar.expression.prior import PriorConfig
    from avatar.expression.train import screen_clips
    clips = [synthetic_clip(i, seconds=12.0) for i in range(3)]
    for c in clips:
        c.phones = phones_of(c)
    late, unrelated = clips[1], clips[2]
    late.targets[:] = np.roll(late.targets, 3, axis=0)              # face 3 frames after the audio
    unrelated.phones = phones_of(synthetic_clip(9, seconds=12.0))   # someone else's speech
    sync = screen_clips(clips, PriorConfig(lead_s=0.0, smooth_s=0.02), min_r=0.25)
    assert sync[clips[0].name].lag == 0 and sync[clips[0].name].r > 0.9 and sync[clips[0].name].used
    assert sync[late.name].lag == -3 and late.offset_frames == -3.0 and sync[late.name].used
    assert not sync[unrelated.name].used


def test_jaw_prior_leads_the_sound_and_rests_in_pauses():
    from avatar.expression.prior import jaw_prior
    from avatar.types import PhonemeTiming
    phones = (PhonemeTiming("SIL", 0.0, 1.0), PhonemeTiming("AA", 1.0, 1.2), PhonemeTiming("SIL", 1.2, 3.0))
    plain = jaw_prior(phones, 25.0, 75, lead_s=0.0, smooth_s=0.0)
    assert plain[25:30].min() == 1.0 and plain[:25].max() == 0 and plain[30:].max() == 0
    early = jaw_prior(phones, 25.0, 75, lead_s=0.12, smooth_s=0.03)
    assert abs(int(np.argmax(early)) - (27 - 3)) <= 1             # peak 3 frames (0.12 s) earlier
    assert early[:15].max() < 0.01 and early[40:].max() < 0.01


def test_checkpoint_with_prior_blends_jaw(tmp_path):
    """Weight 0 reproduces the network; with the prior, jawOpen follows the phones' vowels."""
    from avatar.expression.prior import PriorConfig
    from avatar.types import PhonemeTiming
    net = Audio2ExpressionNet(small_config())
    feats = quiet_features(3.0)
    phones = (PhonemeTiming("SIL", 0.0, 1.0), PhonemeTiming("AA", 1.0, 2.0), PhonemeTiming("UW", 2.0, 2.5),
              PhonemeTiming("SIL", 2.5, 3.0))
    pucker = BLENDSHAPE_NAMES.index("mouthPucker")
    outs, puckers = {}, {}
    for weight in (0.0, 0.9):
        folder = tmp_path / str(weight)
        save_audio2expr(folder, net, "logmel80", np.full(52, 0.3), np.full(52, 0.1),
                        prior=PriorConfig(weight=weight, lead_s=0.0, targets=("jawOpen", "mouthPucker"),
                                          mean=(0.3, 0.2), std=(0.4, 0.3)))
        model = load_audio2expr(folder)
        assert model.prior is not None and model.prior.weight == weight
        weights = model.predict_features(feats, FPS, 75, phones).weights
        outs[weight], puckers[weight] = weights[:, JAW_OPEN], weights[:, pucker]
    alone = load_audio2expr(tmp_path / "0.0").predict_features(feats, FPS, 75).weights[:, JAW_OPEN]
    np.testing.assert_allclose(outs[0.0], alone, atol=1e-6)
    assert outs[0.9][30:45].mean() > outs[0.9][:20].mean() + 0.1          # "ah": jaw open
    assert puckers[0.9][52:60].mean() > puckers[0.9][30:45].mean() + 0.05   # "oo": lips rounded


def test_bad_prior_in_config_is_refused(tmp_path):
    from avatar.expression.prior import PriorConfig
    save_audio2expr(tmp_path, Audio2ExpressionNet(small_config()), "logmel80", np.zeros(52), np.ones(52),
                    prior=PriorConfig())
    config = json.loads((tmp_path / "config.json").read_text())
    config["prior"]["targets"] = ["eyeBlinkLeft"] + config["prior"]["targets"][1:]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AvatarError, match="prior"):
        load_audio2expr(tmp_path)


def test_ensemble_checkpoint_is_the_mean_of_its_members(tmp_path):
    from avatar.audio.features import frame_windows
    from avatar.expression.model import Audio2ExpressionEnsemble
    torch.manual_seed(0)
    ensemble = Audio2ExpressionEnsemble(small_config(), 2)
    save_audio2expr(tmp_path, ensemble, "logmel80", np.full(52, 0.3), np.full(52, 0.1))
    model = load_audio2expr(tmp_path)
    assert model.config["ensemble"] == 2
    feats = quiet_features(2.0)
    z = model.predict_z(feats, FPS, 50)
    windows = torch.from_numpy(frame_windows(feats, FPS, 50, small_config().window)[None])
    with torch.inference_mode():
        members = [m(windows)[0].numpy() for m in ensemble.eval().members]
    np.testing.assert_allclose(z, np.mean(members, 0), atol=1e-5)
    assert np.abs(members[0] - members[1]).max() > 1e-3          # the members differ


def whisper_like(n: int, seed: int, gain=1.0, offset=0.0, loud=0.5) -> SpeechFeatures:
    """[n, 9] 'Whisper' features (8 columns + loudness) of one fixed utterance, as recorded through
    a channel that scales and shifts every column."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)) * np.arange(1, 9) + np.arange(8)
    loudness = np.full((n, 1), loud)
    loudness[: n // 5] = -2.0                               # leading silence
    return SpeechFeatures(np.c_[x * gain + offset, loudness].astype(np.float32), 50.0, "whisper_tiny")


def test_utterance_norm_removes_the_channel_and_keeps_loudness():
    from avatar.audio.features import UtteranceNorm
    corpus = UtteranceNorm.fit([whisper_like(400, 1), whisper_like(400, 2, gain=3.0)], prior_frames=0.0)
    assert corpus.mean.shape == corpus.std.shape == (8,)
    a = corpus(whisper_like(1000, 7))
    b = corpus(whisper_like(1000, 7, gain=2.5, offset=-4.0))        # same speech, other microphone
    np.testing.assert_allclose(a.values, b.values, atol=1e-4)
    np.testing.assert_array_equal(a.values[:, -1], whisper_like(1000, 7).values[:, -1])
    speech = a.values[200:, :-1]
    np.testing.assert_allclose(speech.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(speech.std(0), 1.0, atol=1e-3)
    # no speech at all: the corpus statistics are used, nothing blows up
    shrunk = UtteranceNorm(corpus.mean, corpus.std, 100.0)
    silent = shrunk(whisper_like(50, 3, loud=-2.0))
    assert np.isfinite(silent.values).all()
    raw = whisper_like(50, 3, loud=-2.0).values[:, :-1]
    np.testing.assert_allclose(silent.values[:, :-1], (raw - corpus.mean) / corpus.std, rtol=1e-4, atol=1e-4)
    again = UtteranceNorm.from_dict(json.loads(json.dumps(shrunk.to_dict())), 9)
    np.testing.assert_allclose(again.mean, shrunk.mean, atol=1e-5)
    with pytest.raises(ValueError):
        UtteranceNorm.from_dict(shrunk.to_dict(), 385)
    with pytest.raises(AvatarError, match="Whisper"):
        UtteranceNorm.fit([quiet_features()])


def test_checkpoint_applies_its_feature_norm(tmp_path):
    from avatar.audio.features import UtteranceNorm
    cfg = NetConfig(feature_dim=9, window=8, channels=8, latent=4, context=1, n_out=len(MOUTH_BLENDSHAPES))
    torch.manual_seed(0)
    net = Audio2ExpressionNet(cfg)
    norm = UtteranceNorm.fit([whisper_like(300, 1)])
    save_audio2expr(tmp_path, net, "whisper_tiny", np.full(52, 0.3), np.full(52, 0.1), feature_norm=norm)
    model = load_audio2expr(tmp_path)
    feats = whisper_like(200, 4, gain=2.0)
    pred = model.predict_features(feats, FPS, 80).weights[:, list(MOUTH_BLENDSHAPES)]
    expected = 0.3 + 0.1 * model.predict_z(norm(feats), FPS, 80)
    np.testing.assert_allclose(pred, np.clip(expected, 0, 1), atol=1e-5)
    assert np.abs(model.predict_z(feats, FPS, 80) - model.predict_z(norm(feats), FPS, 80)).max() > 1e-3
    config = json.loads((tmp_path / "config.json").read_text())
    config["feature_norm"]["mean"] = config["feature_norm"]["mean"][:3]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AvatarError, match="feature_norm"):
        load_audio2expr(tmp_path)
