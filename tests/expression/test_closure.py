"""Articulation metrics of bench/articulation.py and the bilabial closure of the checkpoint."""
from __future__ import annotations

import numpy as np

from avatar.expression.checkpoint import closure_mask
from avatar.expression.evaluate import (amplitude_ratio, bilabial_events, closed_gap, closure_rate,
                                        lip_gap, rest_rate)
from avatar.types import PhonemeTiming

FPS = 25.0


def synthetic_gap():
    """2 s: open speech (gap 0.2) with closures to 0.01 at four of five bilabials; silence at the end."""
    gap = np.full(50, 0.2, np.float32)
    phones = []
    for k, t in enumerate([0.2, 0.5, 0.8, 1.1, 1.4]):
        phones.append(PhonemeTiming("b" if k % 2 else "M", t, t + 0.06))
        if k != 3:                                   # the 4th bilabial stays open
            gap[int(round(t * FPS))] = 0.01
    gap[40:] = 0.012                                 # rest: 1.6-2.0 s silent and closed
    gap[45] = 0.15                                   # except one frame
    return gap, tuple(phones)


def test_closure_rate_has_the_known_answer():
    gap, phones = synthetic_gap()
    events = bilabial_events(phones + (PhonemeTiming("AA", 0.3, 0.4),), FPS, len(gap))
    assert len(events) == 5                          # vowels are no events
    assert closure_rate(gap, events, threshold=0.005 + 0.025) == 0.8
    assert closure_rate(gap, events, threshold=0.005) == 0.0     # nothing is below a too tight threshold
    assert np.isnan(closure_rate(gap, [], 0.03))


def test_events_cover_short_phones_and_the_frame_before():
    (lo, hi), = bilabial_events((PhonemeTiming("p", 0.41, 0.42),), FPS, 50)
    assert lo <= 9 and hi >= 12 and hi - lo >= 3     # 0.41 s is frame 10.25: frames 9..11 at least


def test_rest_and_amplitude():
    gap, _ = synthetic_gap()
    silent = np.zeros(len(gap), bool)
    silent[40:] = True
    assert rest_rate(gap, silent, 0.03) == 0.9
    assert np.isnan(rest_rate(gap, np.zeros(len(gap), bool), 0.03))
    assert abs(amplitude_ratio(gap * 0.5, gap) - 0.5) < 1e-6
    assert closed_gap(gap) < 0.013


def test_lip_gap_is_in_eye_distance_units():
    lm = np.zeros((2, 478, 3), np.float32)
    lm[:, 33, 0], lm[:, 263, 0] = 100, 200           # eyes 100 px apart
    lm[0, 14, 1], lm[1, 14, 1] = 10, 30              # lower lip 10 / 30 px under the upper
    np.testing.assert_allclose(lip_gap(lm), [0.1, 0.3], rtol=1e-6)
    np.testing.assert_allclose(lip_gap(lm * 3), [0.1, 0.3], rtol=1e-6)   # any image size


def test_closure_mask_marks_bilabial_frames():
    phones = (PhonemeTiming("SIL", 0.0, 0.4), PhonemeTiming("p", 0.4, 0.5), PhonemeTiming("a", 0.5, 0.8),
              PhonemeTiming("B", 0.905, 0.915))
    m = closure_mask(phones, FPS, 30)
    assert (m[9:13] == 1).all() and m[13] == 0.5     # 0.40-0.50 s = frames 10-12, and the one before
    assert m[22] == m[23] == 1.0                     # a 10 ms phone still closes its nearest frame
    assert m[:9].max() == 0 and m[15:21].max() == 0
    early = closure_mask(phones, FPS, 30, lead_s=0.08)
    assert early[7] == 1.0 and early[12] < 1.0       # read 80 ms ahead: two frames earlier


def test_closed_pose_parts_nothing_and_rolls_the_lips_in():
    """The closed pose (silence, p/b/m): every lip-parting blendshape at weight 0, the lips rolled
    in by ROLL_IN over the rest pose, everything else at rest."""
    from avatar.expression.checkpoint import OPENING_SHAPES, ROLL_IN, ROLL_IN_SHAPES, closed_pose_z
    from avatar.types import BLENDSHAPE_NAMES, MOUTH_BLENDSHAPES, N_BLENDSHAPES
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.02, 0.3, N_BLENDSHAPES)
    std = rng.uniform(0.03, 0.15, N_BLENDSHAPES)
    rest_z = rng.uniform(-1.0, 1.0, len(MOUTH_BLENDSHAPES)).astype(np.float32)
    z = closed_pose_z(mean, std, rest_z)
    for k, i in enumerate(MOUTH_BLENDSHAPES):
        weight, rest = mean[i] + std[i] * z[k], mean[i] + std[i] * rest_z[k]
        name = BLENDSHAPE_NAMES[i]
        expected = 0.0 if name in OPENING_SHAPES else rest + ROLL_IN if name in ROLL_IN_SHAPES else rest
        assert abs(weight - expected) < 1e-5, name
    assert ROLL_IN > 0 and all(n in BLENDSHAPE_NAMES for n in ROLL_IN_SHAPES)


def test_shipped_closed_pose_is_the_code_s():
    """checkpoints/audio2expr/config.json's closed_z is closed_pose_z of its own statistics."""
    from avatar.expression.checkpoint import DEFAULT_DIR, closed_pose_z
    from avatar.io.files import read_json
    c = read_json(DEFAULT_DIR / "config.json")
    z = closed_pose_z(np.asarray(c["output_mean"]), np.asarray(c["output_std"]), np.asarray(c["rest_z"]))
    np.testing.assert_allclose(c["closed_z"], z, atol=1e-5)
