"""Visible blinks: picking a real blink of the target, planning which frames change, and moving
an eye region from one frame onto another."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from avatar.face.mesh import canonical_mesh
from avatar.render.eyes import (EYE_CONTOURS, KEEP_WITHIN, BlinkBank, EyePlan, eye_sources,
                                find_blinks, transfer_eyes, wanted_levels)


def face_landmarks(shift=(0.0, 0.0), size=200) -> np.ndarray:
    """[478, 2] pixel landmarks: the canonical mesh seen from the front, face ~150 px tall."""
    v = canonical_mesh().vertices
    xy = np.c_[v[:, 0], -v[:, 1]] * 8.0 + size / 2 + np.asarray(shift)
    return np.concatenate([xy, np.repeat(xy[:1], 10, 0)]).astype(np.float32)


def texture(size=200, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0))
    return np.clip(128 + noise / noise.std() * 40, 0, 255).astype(np.uint8)


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(image, (dy, dx), axis=(0, 1))


def eye_centre(lm: np.ndarray, eye: int) -> np.ndarray:
    return lm[list(EYE_CONTOURS[eye])].mean(0)


def test_find_blinks_picks_whole_blinks_closest_in_pose_first():
    levels = np.full(100, 0.2, np.float32)
    levels[20:23] = [0.5, 0.8, 0.5]
    levels[70:73] = [0.6, 0.9, 0.6]
    rotations = np.repeat(np.eye(3)[None], 100, 0)
    rotations[70:73] = np.diag([1.0, 0.95, 0.95])    # the second blink has the head turned a little
    first, second = find_blinks(levels, rotations, reference=0, margin=3)
    assert list(first) == list(range(17, 26)) and list(second) == list(range(67, 76))
    assert levels[first[0]] == levels[first[-1]] == pytest.approx(0.2)      # open at both ends
    assert len(find_blinks(levels, rotations, reference=0, count=1)) == 1
    rotations[70:73] = np.diag([1.0, 0.7, 0.7])       # turned far: only the similar blink is kept
    assert [list(b) for b in find_blinks(levels, rotations, reference=0)] == [list(range(17, 26))]
    rotations[:] = np.diag([1.0, 0.7, 0.7])
    rotations[20:23] = np.eye(3)
    assert list(find_blinks(levels, rotations, reference=0)[0]) == list(range(67, 76))
    assert find_blinks(np.full(50, 0.2) + np.linspace(0, 0.1, 50)) == []     # no blink
    edge = np.full(30, 0.2)
    edge[0:2] = 0.9                                   # a blink cut by the start of the video
    assert find_blinks(edge) == []


def test_eye_sources_change_only_frames_far_from_the_wanted_level():
    bank = np.array([0.2, 0.4, 0.7, 0.4, 0.2])
    wanted = wanted_levels(np.array([0.0, 0.5, 1.0, 0.0]), rest=0.2, closed=0.7)
    assert wanted == pytest.approx([0.2, 0.45, 0.7, 0.2])
    current = np.array([0.2 + KEEP_WITHIN / 2, 0.2, 0.2, 0.7])
    assert list(eye_sources(wanted, current, bank)) == [-1, 1, 2, 0]


def test_eye_sources_take_the_bank_blinks_in_turn():
    bank = np.array([0.2, 0.8, 0.2, 0.2, 0.7, 0.2])        # two blinks, starting at 0 and 3
    wanted = np.array([0.2, 0.8, 0.2, 0.2, 0.8, 0.2, 0.2, 0.8, 0.2])
    current = np.full(9, 0.2)
    assert list(eye_sources(wanted, current, bank, (0, 3))) == [-1, 1, -1, -1, 4, -1, -1, 1, -1]
    with pytest.raises(ValueError, match="starts"):
        BlinkBank(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 478, 2)), np.zeros(2), (1,))


def test_transfer_aligns_the_source_eye_and_leaves_the_rest():
    dst_lm = face_landmarks()
    base = texture()
    closed = base.copy()
    for eye in range(2):                              # "shut lids": a dark band over each eye
        x, y = eye_centre(dst_lm, eye).astype(int)
        closed[y - 3:y + 4, x - 12:x + 13] = 20
    dx, dy = 9, -6                                    # the bank was filmed with the head moved
    bank = BlinkBank(np.stack([shifted(base, dx, dy), shifted(closed, dx, dy)]),
                     np.stack([face_landmarks((dx, dy))] * 2), np.array([0.2, 0.8]))
    same = transfer_eyes(base, dst_lm, bank, 0)       # open eye onto the same open frame
    x, y = eye_centre(dst_lm, 0).astype(int)
    inner = (slice(y - 8, y + 9), slice(x - 15, x + 16))
    assert np.abs(same[inner].astype(int) - base[inner]).mean() < 2.0
    shut = transfer_eyes(base, dst_lm, bank, 1)
    for eye in range(2):
        x, y = eye_centre(dst_lm, eye).astype(int)
        assert shut[y - 2:y + 3, x - 8:x + 9].mean() < 30            # the lids moved in, aligned
        assert base[y - 2:y + 3, x - 8:x + 9].mean() > 80
    assert np.array_equal(shut[170:], base[170:])     # the mouth and chin are untouched
    assert np.array_equal(shut[:, :20], base[:, :20])


def test_transfer_matches_brightness_of_the_frame_underneath():
    dst_lm = face_landmarks()
    base = texture()
    brighter = np.clip(base.astype(int) + 30, 0, 255).astype(np.uint8)
    bank = BlinkBank(np.stack([base, base]), np.stack([dst_lm, dst_lm]), np.array([0.2, 0.8]))
    out = transfer_eyes(brighter, dst_lm, bank, 1)
    x, y = eye_centre(dst_lm, 1).astype(int)
    region = (slice(y - 6, y + 7), slice(x - 10, x + 11))
    assert abs(out[region].mean() - brighter[region].mean()) < 3.0   # no dark patch
    # a second blink filmed brighter is matched on its own open frame, not on the first blink's
    two = BlinkBank(np.stack([base, base, brighter, brighter]), np.stack([dst_lm] * 4),
                    np.array([0.2, 0.8, 0.2, 0.8]), (0, 2))
    out = transfer_eyes(base, dst_lm, two, 3)
    assert abs(out[region].mean() - base[region].mean()) < 3.0


def test_plan_applies_only_to_planned_frames():
    lm = face_landmarks()
    base, other = texture(seed=0), texture(seed=1)
    bank = BlinkBank(np.stack([other, other]), np.stack([lm, lm]), np.array([0.2, 0.8]))
    plan = EyePlan(bank, np.array([-1, 1, -1]), lm[None], np.zeros(3, np.int64))
    batch = np.stack([base] * 3)
    out = plan.apply(batch.copy(), 0)
    assert np.array_equal(out[0], base) and np.array_equal(out[2], base)
    assert not np.array_equal(out[1], base)
    assert (plan.sources >= 0).sum() == 1
    with pytest.raises(ValueError, match="as many"):
        BlinkBank(np.stack([base]), np.stack([lm, lm]), np.array([0.2]))


@pytest.fixture(scope="module")
def tiny_person(tmp_path_factory):
    from avatar.render.person import load_person
    from tests.pipelines.tiny_person import make_tiny_person
    return load_person(str(make_tiny_person(tmp_path_factory.mktemp("eyes") / "tiny")), "cpu")


def with_blink(target, frames=(6, 7, 8)):
    """The target with a blink tracked at `frames` (the synthetic person never blinks)."""
    from dataclasses import replace
    from avatar.render.eyes import BLINK_CHANNELS
    shapes = target.track.blendshapes.copy()
    shapes[:, list(BLINK_CHANNELS)] = 0.1
    for f, level in zip(frames, (0.5, 0.9, 0.5)):
        shapes[f, list(BLINK_CHANNELS)] = level
    return replace(target, track=replace(target.track, blendshapes=shapes))


def test_eye_plan_follows_the_blink_setting(tiny_person, capsys):
    from avatar.config import SaySettings
    from avatar.expression.shaping import synthetic_blinks
    from avatar.render.clip import eye_plan
    from avatar.types import Expressions
    n, fps = 120, 10.0
    driving = Expressions(np.zeros((n, 52), np.float32), fps)
    target = with_blink(tiny_person.target)
    size = tuple(target.track.frame_size)
    indices = np.zeros(n, np.int64)

    def plan(target, **options):
        return eye_plan(driving, target, indices, SaySettings(**options), "mouth", size, 1.0)

    still = plan(target, head_motion="still", seed=3)          # auto -> synthetic blinks
    curve = synthetic_blinks(n, fps, 3)
    assert still is not None and still.bank.frames.shape[1:] == (size[1], size[0], 3)
    assert (still.sources[curve > 0.5] >= 0).all() and (still.sources[curve == 0] == -1).all()
    assert still.bank.levels[still.sources[np.argmax(curve)]] == pytest.approx(0.9)
    assert plan(target) is None                                 # the target's own blinks
    blinking = np.full(n, 7, np.int64)                          # a frame with shut eyes, held
    none = eye_plan(driving, target, blinking, SaySettings(blink="none"), "mouth", size, 1.0)
    assert (none.sources >= 0).all() and np.allclose(none.bank.levels[none.sources], 0.1)
    assert plan(tiny_person.target, blink="synthetic") is None  # nothing to copy from
    captured = capsys.readouterr()
    assert "shows no blink" in captured.out + captured.err
