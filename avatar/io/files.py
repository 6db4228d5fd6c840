"""Safe file handling: atomic writes, content hashes, safetensors + JSON with clear errors.

Every writer goes through `atomic_output`: data lands in a temp file beside the target and is
renamed over it only when complete, so a crash never leaves a half-written file that looks good.
Temp files are named `.<name>.~avatar-<pid>-<random><suffix>`, so the next run can tell its own
stale leftovers (their process is gone) from another run's work in progress
(`remove_stale_temps`). JSON is read with limits on size and nesting depth, checked before
parsing, so a hostile file cannot exhaust memory or the stack.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from avatar.errors import AvatarError

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
TEMP_MARK = "~avatar-"
# .<name>.~avatar-<pid>-<8 random chars from mkstemp><suffix>
_TEMP = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(\d+)-[a-z0-9_]{8}(\..*)?$")


def temp_prefix(name: str) -> str:
    """Prefix of this process's temp files for `name` (see remove_stale_temps)."""
    return f".{name}.{TEMP_MARK}{os.getpid()}-"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix or path.suffix + ".tmp",
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


def is_temp_name(name: str) -> bool:
    return _TEMP.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # someone else's process: not ours to judge
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete this toolkit's temp files in `folder` whose process is gone (a killed run's
    leftovers); temp files of runs still going are kept. Returns the removed paths."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and not _alive(int(m.group(1))) and (p.is_file() or p.is_symlink()):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


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


def read_json(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> dict:
    text = read_text(path, what, max_bytes)
    return parse_json(text, f"{what} {path}", max_depth)


def parse_json(text: str, where: str, max_depth: int = MAX_JSON_DEPTH):
    """json.loads with the nesting depth checked first (no RecursionError on hostile input)."""
    depth = json_depth(text)
    if depth > max_depth:
        raise AvatarError(f"{where} is nested {depth} levels deep, at most {max_depth} are "
                          "allowed; it is damaged or not made by this toolkit")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AvatarError(f"{where} is not valid JSON ({e}); restore or re-create it") from None
    except RecursionError:              # a depth the scan above missed: still one line
        raise AvatarError(f"{where} is nested too deeply; it is damaged") from None
    if not isinstance(data, dict):
        raise AvatarError(f"{where} must hold a JSON object")
    return data


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')      # unrolled: linear time


def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings do not count); vectorized,
    so a 64 MiB file takes well under a second."""
    stripped = _JSON_STRING.sub('""', text)
    raw = np.frombuffer(stripped.encode("utf-8", "replace"), np.uint8)
    if raw.size == 0:
        return 0
    steps = np.isin(raw, (ord("["), ord("{"))).astype(np.int32) - \
        np.isin(raw, (ord("]"), ord("}"))).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


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


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the block; if another
    process holds it, AvatarError(busy) at once (no waiting)."""
    import fcntl
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AvatarError(busy) from None
        yield
    finally:
        os.close(fd)
