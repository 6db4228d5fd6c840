"""Phone recognition (PocketSphinx) and the articulation curves of the phonetic prior."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.audio import synthesize
from avatar.audio.phones import VOWELS, articulation, recognize_phones
from avatar.errors import AvatarError
from avatar.types import PhonemeTiming, Speech


def test_tts_speech_gives_timed_vowels_and_consonants():
    speech = synthesize("Bob bought a big blue balloon at the market.")
    phones = recognize_phones(speech)
    labels = [p.phoneme for p in phones]
    starts = [p.start_s for p in phones]
    assert starts == sorted(starts)
    assert all(p.end_s > p.start_s for p in phones)
    assert phones[-1].end_s <= speech.duration_s + 0.02
    vowel_time = sum(p.end_s - p.start_s for p in phones if p.phoneme in VOWELS)
    assert vowel_time > 0.2 * speech.duration_s                # a sentence is mostly syllables
    assert sum(label in ("B", "P", "M") for label in labels) >= 2   # the lips close for b/p/m


def test_silence_has_no_speech_phones():
    phones = recognize_phones(Speech(np.zeros(32000, np.float32), 16000))
    assert all(p.phoneme == "SIL" for p in phones)
    curves = articulation(phones, 100.0, 200)
    assert curves.max() == 0.0                                   # mouth at rest


def test_wrong_rate_is_refused():
    with pytest.raises(AvatarError, match="16000"):
        recognize_phones(Speech(np.zeros(8000, np.float32), 8000))


def test_articulation_values_sit_where_the_phones_are():
    phones = (PhonemeTiming("SIL", 0.0, 0.5), PhonemeTiming("M", 0.5, 0.6), PhonemeTiming("AA", 0.6, 0.8),
              PhonemeTiming("UW", 0.8, 1.0))
    c = articulation(phones, 100.0, 120)
    jaw, closure, rounding = c[:, 0], c[:, 1], c[:, 2]
    assert jaw[:50].max() == 0 and jaw[55] == 0 and closure[55] == 1.0
    assert jaw[70] == 1.0 and closure[70] == 0 and rounding[90] == 1.0 and jaw[90] < 0.5
    assert c[100:].max() == 0


def test_whisper_phones_features_carry_the_articulation():
    from avatar.audio import speech_features
    from avatar.audio.features import FEATURE_DIMS, loudness_db
    speech = synthesize("Map the moon.")
    padded = Speech(np.concatenate([speech.samples, np.zeros(16000, np.float32)]), 16000)
    feats = speech_features(padded, "whisper_phones")
    assert feats.values.shape == (int(np.ceil(len(padded.samples) / 320)), FEATURE_DIMS["whisper_phones"])
    curves = feats.values[:, 384:387]
    assert curves[: int(speech.duration_s * 50), 0].max() > 0.5          # open vowels while speaking
    assert curves[-40:].max() == 0.0                                      # the added second of silence
    assert loudness_db(feats)[-40:].max() < -60                           # loudness is still the last column


@pytest.mark.parametrize("n", [1, 160, 800])
def test_very_short_audio_gives_pauses_not_errors(n):
    rng = np.random.default_rng(0)
    phones = recognize_phones(Speech((0.3 * rng.standard_normal(n)).astype(np.float32), 16000))
    assert all(p.end_s <= n / 16000 + 0.05 for p in phones)
