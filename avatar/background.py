"""fn(*args) on a thread of its own, for work that overlaps other work (native code that releases
the GIL: decoding, feature engines, warm-ups)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


def in_background(fn: Callable, *args, name: str = "avatar-background") -> Future:
    """fn(*args) on a new thread named `name`; its Future (the thread ends with the call)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)
