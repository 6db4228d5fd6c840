"""avatar/expression/shaping.py: the weights of each output frame."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.config import SaySettings
from avatar.expression.shaping import (EYE_BLINKS, fit_length, resample_expressions, resolved_blink,
                                       shape_expressions, synthetic_blinks, wanted_blinks)
from avatar.types import BLENDSHAPE_NAMES, JAW_OPEN, MOUTH_BLENDSHAPES, Expressions

BROW = BLENDSHAPE_NAMES.index("browInnerUp")


def driving(n=10, fps=10.0, jaw=0.4, blink=0.0):
    w = np.zeros((n, 52), np.float32)
    w[:, JAW_OPEN] = jaw
    w[:, BROW] = 0.9
    w[:, list(EYE_BLINKS)] = blink
    return Expressions(w, fps)


def target_shapes(n=20):
    w = np.zeros((n, 52), np.float32)
    w[:, JAW_OPEN] = 0.05
    w[:, BROW] = np.linspace(0, 0.5, n)
    w[:, list(EYE_BLINKS)] = 0.2
    return w


def test_mouth_from_the_driver_the_rest_from_the_target():
    indices = np.arange(3, 13)
    out = shape_expressions(driving(), target_shapes(), indices, SaySettings(expression_scale=2.0))
    assert np.allclose(out.weights[:, JAW_OPEN], 0.8)                   # scaled
    assert np.allclose(out.weights[:, BROW], target_shapes()[indices, BROW])
    assert np.allclose(out.weights[:, list(EYE_BLINKS)], 0.2)           # auto + head motion: target's
    everything = shape_expressions(driving(), target_shapes(), indices, SaySettings(), drive="all")
    assert np.allclose(everything.weights[:, BROW], 0.9)
    assert set(MOUTH_BLENDSHAPES) >= {JAW_OPEN} and BROW not in MOUTH_BLENDSHAPES


def test_weights_stay_in_range_and_fit_the_frame_count():
    out = shape_expressions(driving(n=4, jaw=0.9), target_shapes(), np.arange(10),
                            SaySettings(expression_scale=3.0))
    assert out.weights.shape == (10, 52) and out.weights.max() <= 1.0
    assert np.allclose(out.weights[4:, JAW_OPEN], 1.0)                 # last row repeated, clipped
    assert fit_length(np.zeros((0, 52)), 3).shape == (3, 52)


@pytest.mark.parametrize("settings, drive, mode", [
    (SaySettings(), "mouth", "target"), (SaySettings(head_motion="still"), "mouth", "synthetic"),
    (SaySettings(), "all", "driving"), (SaySettings(blink="none"), "all", "none")])
def test_auto_blink_is_decided(settings, drive, mode):
    assert resolved_blink(settings, drive) == mode


def test_blink_curves():
    still = SaySettings(head_motion="still", seed=5)
    curve = synthetic_blinks(600, 30.0, 5)
    assert np.array_equal(curve, synthetic_blinks(600, 30.0, 5))        # seeded
    assert not np.array_equal(curve, synthetic_blinks(600, 30.0, 6))
    starts = np.flatnonzero((curve[1:] > 0.5) & (curve[:-1] <= 0.5))
    assert 3 <= len(starts) <= 8 and (np.diff(starts) / 30.0 > 2.5).all()   # every 2.5-6 s
    out = shape_expressions(driving(n=600, fps=30.0), target_shapes(600), np.arange(600), still)
    assert np.allclose(out.weights[:, EYE_BLINKS[0]], curve)
    assert wanted_blinks(driving(), SaySettings(), "mouth", 10, 0.1) is None
    assert np.allclose(wanted_blinks(driving(), SaySettings(blink="none"), "mouth", 10, 0.1), 0.1)


def test_resampling_keeps_the_curve():
    w = np.zeros((11, 52), np.float32)
    w[:, JAW_OPEN] = np.linspace(0, 1, 11)
    out = resample_expressions(Expressions(w, 10.0), 20.0, 21)
    assert out.fps == 20.0 and len(out) == 21
    assert np.allclose(out.weights[:, JAW_OPEN], np.linspace(0, 1, 21), atol=1e-6)
