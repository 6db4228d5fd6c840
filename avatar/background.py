"""fn(*args) on a thread of its own, for work that overlaps other work (native code that releases
the GIL: decoding, feature engines, warm-ups)."""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


def in_background(fn: Callable, *args, name: str = "avatar-background") -> Future:
    """fn(*args) on a new thread named `name`; its Future (the thread ends with the call)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "before": 0}


@contextlib.contextmanager
def torch_threads(n: int):
    """PyTorch's intra-op threads set to n for the block (process-wide), then restored. Blocks of
    several threads may overlap (the features' encoder beside a renderer warm-up): the count in
    force before the first of them is restored when the last one ends."""
    import torch
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["before"] = torch.get_num_threads()
        _THREADS_STATE["depth"] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["before"])
