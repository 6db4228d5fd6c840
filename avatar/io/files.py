"""Safe file handling: atomic writes, content hashes, safetensors + JSON with clear errors.

Every writer goes through `atomic_output`: data lands in a temp file beside the target and is
renamed over it only when complete, so a crash never leaves a half-written file that looks good.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from avatar.errors import AvatarError

MAX_JSON_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; use the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, data) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def read_text(path: str | os.PathLike, what: str, max_bytes: int) -> str:
    """A UTF-8 text file of bounded size, or a one-line AvatarError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AvatarError(f"{what} {path} does not exist")
    if path.stat().st_size > max_bytes:
        raise AvatarError(f"{what} {path} is larger than {max_bytes >> 20} MiB; "
                          "is it the right file? (split it if it is)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AvatarError(f"{what} {path} is not UTF-8 text ({e}); save it as UTF-8") from None


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    text = read_text(path, what, MAX_JSON_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AvatarError(f"{what} {path} is not valid JSON ({e}); restore or re-create it") from None
    if not isinstance(data, dict):
        raise AvatarError(f"{what} {path} must hold a JSON object")
    return data


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                metadata: Mapping[str, str] | None = None) -> None:
    """Write numpy arrays as safetensors, atomically."""
    from safetensors.numpy import save_file
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_output(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata or {}))


def load_arrays(path: str | os.PathLike, expected: Mapping[str, tuple] | None = None,
                what: str = "checkpoint") -> dict[str, np.ndarray]:
    """Read a safetensors file into numpy arrays, checking names and shapes.

    `expected` maps a name to a shape tuple whose entries are ints or None (any size).
    """
    from safetensors.numpy import load_file
    path = Path(path)
    if not path.is_file():
        raise AvatarError(f"{what} {path} does not exist")
    try:
        arrays = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise AvatarError(f"{what} {path} is damaged or not a safetensors file ({e}); "
                          "re-create it") from None
    for name, shape in (expected or {}).items():
        check_shape(arrays, name, shape, f"{what} {path}")
    return arrays


def check_shape(arrays: Mapping[str, np.ndarray], name: str, shape: tuple, where: str) -> None:
    if name not in arrays:
        raise AvatarError(f"{where} lacks tensor '{name}'; it is incomplete or from another version")
    got = tuple(arrays[name].shape)
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        raise AvatarError(f"{where}: tensor '{name}' has shape {got}, expected {shape}; "
                          "the file is damaged or from another version")
    if np.issubdtype(arrays[name].dtype, np.floating) and not np.isfinite(arrays[name]).all():
        raise AvatarError(f"{where}: tensor '{name}' holds NaN or inf values; the file is damaged")
