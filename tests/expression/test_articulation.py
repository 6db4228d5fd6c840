"""The TTS-trained articulation net of the phonetic prior."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar.errors import AvatarError
from avatar.expression import Audio2ExpressionNet, NetConfig, load_audio2expr, save_audio2expr
from avatar.audio.phones import articulation
from avatar.expression.articulation import (ArticulationConfig, ArticulationNet, stdlib_sentences,
                                            train_articulation, tts_example)
from avatar.expression.prior import PriorConfig
from avatar.types import MOUTH_BLENDSHAPES, PhonemeTiming, SpeechFeatures


def test_ipa_curves_follow_piper_phonemes():
    ph = [PhonemeTiming("^", 0.0, 0.1), PhonemeTiming("m", 0.1, 0.2), PhonemeTiming("ˈ", 0.2, 0.25),
          PhonemeTiming("ɑ", 0.25, 0.4), PhonemeTiming("ː", 0.4, 0.5), PhonemeTiming("u", 0.5, 0.6),
          PhonemeTiming("$", 0.6, 0.7)]
    c = articulation(ph, 100.0, 80)
    assert c[:10].max() == 0 and c[15, 1] == 1.0 and c[15, 0] == 0           # m: lips closed
    assert c[22, 0] == 1.0 and c[30, 0] == 1.0 and c[45, 0] == 1.0           # stress and length marks
    assert c[55, 2] == 1.0 and c[65:].max() == 0                             # u rounded, then a pause


def test_stdlib_gives_plain_sentences():
    sentences = stdlib_sentences()
    assert len(sentences) > 500
    assert all(5 <= len(s.split()) <= 20 for s in sentences[:100])


def test_two_training_steps_on_tts_examples():
    rng = np.random.default_rng(0)
    examples = [tts_example("Bob bought a big blue balloon.", "logmel80", rng),
                tts_example("Map the moon.", "logmel80", rng)]
    f, t = examples[0]
    assert f.shape[1] == 80 and len(t) == len(f) and t[:, 1].max() == 1.0   # b/m close the lips
    net, losses = train_articulation(examples, ArticulationConfig(feature_dim=80, channels=8), steps=2)
    assert len(losses) == 2 and np.isfinite(losses).all()
    out = net.curves(f)
    assert out.shape == (len(f), 3) and (out >= 0).all() and (out <= 1).all()


def small_checkpoint(tmp_path, articulation):
    torch.manual_seed(0)
    net = Audio2ExpressionNet(NetConfig(feature_dim=80, window=16, channels=8, latent=8, context=2,
                                        n_out=len(MOUTH_BLENDSHAPES), dropout=0.0))
    save_audio2expr(tmp_path, net, "logmel80", np.full(52, 0.3), np.full(52, 0.1),
                    prior=PriorConfig(), articulation=articulation)
    return tmp_path


def test_checkpoint_carries_the_articulation_net(tmp_path):
    torch.manual_seed(1)
    art = ArticulationNet(ArticulationConfig(feature_dim=80, channels=8)).eval()
    model = load_audio2expr(small_checkpoint(tmp_path, art))
    feats = SpeechFeatures(np.random.default_rng(0).standard_normal((300, 80)).astype(np.float32), 100.0, "logmel80")
    np.testing.assert_allclose(model.articulation.curves(feats.values), art.curves(feats.values), atol=1e-6)
    phones = (PhonemeTiming("SIL", 0.0, 3.0),)
    curves = model.prior_curves(feats, 25.0, 75, phones)
    assert curves.max() > 0                                                   # the net's half of the average
    # damaged file or tampered entry: refused
    (tmp_path / "articulation.safetensors").write_bytes(b"junk")
    with pytest.raises(AvatarError, match="articulation"):
        load_audio2expr(tmp_path)


def test_checkpoint_without_articulation_has_no_file(tmp_path):
    model = load_audio2expr(small_checkpoint(tmp_path, None))
    assert model.articulation is None and not (tmp_path / "articulation.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["articulation"] is None


def test_tts_speech_uses_piper_timings_not_the_recognizer(tmp_path, monkeypatch):
    from avatar.expression import checkpoint
    from avatar.types import Speech
    model = load_audio2expr(small_checkpoint(tmp_path, None))
    monkeypatch.setattr(checkpoint, "recognize_phones", lambda s: pytest.fail("recognized TTS speech"))
    speech = Speech(np.zeros(32000, np.float32), 16000,
                    phonemes=(PhonemeTiming("ɑ", 0.5, 1.0), PhonemeTiming("m", 1.0, 1.2)))
    jaw = model.predict(speech, 25.0).weights[:, 25]
    assert jaw[15:24].mean() > jaw[:8].mean() + 0.02      # "ah" opens the mouth (lead 0.1 s)
