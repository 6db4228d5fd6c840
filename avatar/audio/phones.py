"""Phones heard in speech, and the mouth articulation they imply (the phonetic prior).

`recognize_phones(speech)` runs CMU PocketSphinx's phone-loop recognizer (the US English acoustic
model and phone language model ship inside the `pocketsphinx` wheel: offline, about 0.05 s per
second of speech on one core) and returns ARPAbet phones with times. It needs no transcript and
runs on any language; outside English the labels are the nearest English phones, which still tell
open vowels from closed consonants and pauses.

`articulation(phones, rate_hz, n)` turns phones (these, or piper's IPA timings) into three curves in [0, 1] sampled at `rate_hz`:
jaw opening (open vowels high, bilabials zero), lip closure (p, b, m; f, v half) and lip rounding
(u, o, w, sh ...). The values are textbook phonetics (vowel height and viseme classes), not fitted
to our corpus: that is what makes them a prior that ~90 s of video cannot overfit.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from avatar.errors import AvatarError
from avatar.types import PhonemeTiming, Speech

_SR = 16000
_UTTERANCE_S = 20.0                 # long audio is recognized in pieces of this length
_QUIET_DB = 35.0                    # a phone this far under the speech level is a pause
_FLOOR_DB = -60.0                   # and so is anything quieter than this (dBFS)

VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
JAW_OPENING = {
    "AA": 1.0, "AE": 0.9, "AO": 0.85, "AW": 0.9, "AY": 0.9, "AH": 0.7, "EH": 0.7, "OY": 0.7,
    "OW": 0.6, "EY": 0.55, "ER": 0.45, "IH": 0.4, "UH": 0.4, "UW": 0.3, "IY": 0.25,
    "HH": 0.5, "K": 0.35, "G": 0.35, "NG": 0.35, "L": 0.35, "R": 0.35, "T": 0.3, "D": 0.3,
    "N": 0.3, "TH": 0.3, "DH": 0.3, "SH": 0.25, "ZH": 0.25, "CH": 0.25, "JH": 0.25, "Y": 0.25,
    "W": 0.2, "F": 0.15, "V": 0.15, "S": 0.15, "Z": 0.15, "B": 0.0, "P": 0.0, "M": 0.0,
}
LIP_CLOSURE = {"B": 1.0, "P": 1.0, "M": 1.0, "F": 0.5, "V": 0.5}
LIP_ROUNDING = {"UW": 1.0, "W": 1.0, "OW": 0.8, "UH": 0.6, "OY": 0.6, "SH": 0.5, "ZH": 0.5,
                "CH": 0.5, "JH": 0.5, "AO": 0.4, "R": 0.4, "ER": 0.4}
CURVES = ("jaw_opening", "lip_closure", "lip_rounding")

# piper's IPA symbols -> (jaw opening, lip closure, lip rounding), the same textbook values
IPA_ARTICULATION = {
    "a": (1.0, 0, 0), "ɑ": (1.0, 0, 0), "æ": (0.9, 0, 0), "ɒ": (0.9, 0, 0.4), "ɔ": (0.85, 0, 0.4),
    "ɐ": (0.7, 0, 0), "ʌ": (0.7, 0, 0), "ɛ": (0.7, 0, 0), "œ": (0.6, 0, 0.6), "o": (0.6, 0, 0.8),
    "e": (0.55, 0, 0), "ə": (0.5, 0, 0), "ɜ": (0.5, 0, 0.2), "ɤ": (0.5, 0, 0), "ø": (0.5, 0, 0.8),
    "ɚ": (0.45, 0, 0.4), "ɪ": (0.4, 0, 0), "ʊ": (0.4, 0, 0.6), "u": (0.3, 0, 1.0), "ɨ": (0.3, 0, 0),
    "ɯ": (0.3, 0, 0), "i": (0.25, 0, 0), "y": (0.25, 0, 0.8),
    "h": (0.5, 0, 0), "k": (0.35, 0, 0), "g": (0.35, 0, 0), "ɡ": (0.35, 0, 0), "ŋ": (0.35, 0, 0),
    "x": (0.35, 0, 0), "ç": (0.35, 0, 0), "l": (0.35, 0, 0), "ɫ": (0.35, 0, 0), "ɹ": (0.35, 0, 0.4),
    "r": (0.35, 0, 0.4), "t": (0.3, 0, 0), "d": (0.3, 0, 0), "n": (0.3, 0, 0), "θ": (0.3, 0, 0),
    "ð": (0.3, 0, 0), "ɾ": (0.3, 0, 0), "ʔ": (0.3, 0, 0), "ʃ": (0.25, 0, 0.5), "ʒ": (0.25, 0, 0.5),
    "j": (0.25, 0, 0), "w": (0.2, 0, 1.0), "f": (0.15, 0.5, 0), "v": (0.15, 0.5, 0), "s": (0.15, 0, 0),
    "z": (0.15, 0, 0), "p": (0.0, 1.0, 0), "b": (0.0, 1.0, 0), "m": (0.0, 1.0, 0),
}
_STRESS, _HOLD = frozenset("ˈˌ"), frozenset("ː ")    # take the next / the previous sound's value


@functools.lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Decoder, get_model_path     # a pinned dependency (pyproject.toml)
    model = os.path.join(get_model_path(), "en-us")
    return Decoder(hmm=os.path.join(model, "en-us"), allphone=os.path.join(model, "en-us-phone.lm.bin"),
                   lw=2.0, beam=1e-10, pbeam=1e-10, samprate=_SR, loglevel="FATAL")


def recognize_phones(speech: Speech) -> tuple[PhonemeTiming, ...]:
    """ARPAbet phones (and "SIL") with start/end seconds, in time order, covering the speech."""
    if speech.sample_rate != _SR:
        raise AvatarError(f"speech must be at {_SR} Hz (got {speech.sample_rate}); load it with "
                          "avatar.audio.load_speech")
    decoder = _decoder()
    pcm = (np.clip(np.asarray(speech.samples, np.float32), -1.0, 1.0) * 32767).astype("<i2")
    step = int(_UTTERANCE_S * _SR)
    out: list[PhonemeTiming] = []
    for start in range(0, len(pcm), step):
        offset = start / _SR
        decoder.start_utt()
        decoder.process_raw(pcm[start:start + step].tobytes(), full_utt=True)
        decoder.end_utt()
        for seg in decoder.seg() or ():          # None when the piece is too short to decode
            label = seg.word.upper()
            if label not in JAW_OPENING:
                label = "SIL"                       # SIL, noise and filler models
            out.append(PhonemeTiming(label, offset + seg.start_frame / 100.0,
                                     offset + (seg.end_frame + 1) / 100.0))
    return _silence_quiet_phones(out, speech)


def _silence_quiet_phones(phones: list[PhonemeTiming], speech: Speech) -> tuple[PhonemeTiming, ...]:
    """Relabel as SIL the phones heard in near-silence (the recognizer's normalization turns
    digital silence or faint room noise into fricatives)."""
    from avatar.audio.load import frame_rms_db
    db = frame_rms_db(speech.samples, speech.sample_rate, 0.01)
    if len(db) == 0:
        return tuple(phones)
    quiet_below = max(float(np.percentile(db, 90)) - _QUIET_DB, _FLOOR_DB)
    out = []
    for p in phones:
        seg = db[int(p.start_s * 100): max(int(p.end_s * 100), int(p.start_s * 100) + 1)]
        loud = len(seg) > 0 and float(seg.max()) > quiet_below
        out.append(p if loud or p.phoneme == "SIL" else PhonemeTiming("SIL", p.start_s, p.end_s))
    return tuple(out)


def articulation(phones, rate_hz: float, n: int) -> np.ndarray:
    """[n, 3] (jaw opening, lip closure, lip rounding) at times i / rate_hz; 0 in pauses. Phones in
    ARPAbet (PocketSphinx) or IPA (piper's phoneme timings; stress marks take the next sound's
    value, length marks and word gaps the previous one's)."""
    out = np.zeros((n, len(CURVES)), np.float32)
    for p, value in zip(phones, _values(phones)):
        lo = max(int(round(p.start_s * rate_hz)), 0)
        hi = min(int(round(p.end_s * rate_hz)), n)
        if hi > lo:
            out[lo:hi] = value
    return out


def _values(phones) -> list[tuple]:
    values: list[tuple] = []
    for i, p in enumerate(phones):
        label = p.phoneme
        if label in JAW_OPENING:
            values.append((JAW_OPENING[label], LIP_CLOSURE.get(label, 0.0), LIP_ROUNDING.get(label, 0.0)))
        elif label in IPA_ARTICULATION:
            values.append(IPA_ARTICULATION[label])
        elif label in _STRESS:
            values.append(next((IPA_ARTICULATION[q.phoneme] for q in phones[i + 1:i + 3]
                                if q.phoneme in IPA_ARTICULATION), (0, 0, 0)))
        elif label in _HOLD and values:
            values.append(values[-1])
        else:
            values.append((0, 0, 0))                   # SIL, sentence marks, punctuation: a pause
    return values


# ---- phones from hama's phoneme posteriors ---------------------------------------------------

_HAMA_HOLD_S = 0.2              # a phone lasts at most this long after hama emits it
HAMA_DELAY_S = 0.06             # hama's CTC emits a phone about this long after it starts (vs piper's timings)
_IPA_ALIASES = {"d͡ʒ": "ʒ", "t͡ʃ": "ʃ", "ɝ": "ɚ", "ɡ": "g", "ɫ": "l", "ɻ": "ɹ"}


def ipa_value(label: str) -> tuple | None:
    """Textbook (jaw, closure, rounding) of an IPA token, diphthongs by their first sound."""
    label = _IPA_ALIASES.get(label, label)
    if label.startswith("<"):                         # <wb>, <blank>, <unk>: not a sound
        return None
    if label in IPA_ARTICULATION:
        return IPA_ARTICULATION[label]
    for ch in label:
        if ch in IPA_ARTICULATION:
            return IPA_ARTICULATION[ch]
    return None


def phones_from_posteriors(log_post: np.ndarray, tokens: list[str], blank: int, rate_hz: float,
                           speech: np.ndarray | None = None, delay_s: float = 0.0) -> tuple[PhonemeTiming, ...]:
    """Greedy CTC reading of [T, C] log-posteriors (hama) into IPA phones with times: each emitted
    phone runs from its frame to the next emission, at most _HAMA_HOLD_S; the rest, word gaps and
    frames where `speech` ([T] bool) is False are "SIL". Times are moved `delay_s` earlier (the
    recognizer's emission delay); the first phone still starts at 0."""
    best = np.argmax(log_post, axis=1)
    hold = max(int(round(_HAMA_HOLD_S * rate_hz)), 1)
    sound = np.array([ipa_value(t) is not None for t in tokens] + [False])   # word gaps are no sound
    onsets = [j for j in range(len(best)) if best[j] != blank and sound[best[j]]
              and (j == 0 or best[j] != best[j - 1])]
    labels = np.array(["SIL"] * len(best), dtype=object)
    for i, j in enumerate(onsets):
        end = min(onsets[i + 1] if i + 1 < len(onsets) else len(best), j + hold)
        labels[j:end] = tokens[best[j]]
    if speech is not None:
        labels[~np.asarray(speech, bool)[: len(labels)]] = "SIL"
    out, start = [], 0
    for j in range(1, len(labels) + 1):
        if j == len(labels) or labels[j] != labels[start]:
            out.append(PhonemeTiming(_IPA_ALIASES.get(labels[start], labels[start]),
                                     max(start / rate_hz - delay_s, 0.0) if start else 0.0,
                                     max(j / rate_hz - delay_s, 1e-3)))
            start = j
    return tuple(_first_sound(p) for p in out)


def _first_sound(p: PhonemeTiming) -> PhonemeTiming:
    """Map a multi-character IPA token (diphthong, affricate) to one the articulation table knows."""
    if p.phoneme == "SIL" or p.phoneme in IPA_ARTICULATION:
        return p
    for ch in ("" if p.phoneme.startswith("<") else p.phoneme):
        if ch in IPA_ARTICULATION:
            return PhonemeTiming(ch, p.start_s, p.end_s)
    return PhonemeTiming("SIL", p.start_s, p.end_s)


def hama_phones(speech: Speech) -> tuple[PhonemeTiming, ...]:
    """IPA phones heard by hama (50 Hz posteriors), silenced where silero-vad hears no speech."""
    from avatar.audio.features import (hama_blank_index, hama_log_posteriors, hama_tokens,
                                       vad_probabilities)
    if speech.sample_rate != _SR:
        raise AvatarError(f"speech must be at {_SR} Hz (got {speech.sample_rate}); load it with "
                          "avatar.audio.load_speech")
    lp = hama_log_posteriors(speech.samples)
    vad = vad_probabilities(speech.samples, len(lp))
    return phones_from_posteriors(lp, hama_tokens(), hama_blank_index(), 50.0, vad > 0.5, HAMA_DELAY_S)
