"""avatar.background: torch_threads blocks that overlap on two threads restore the count."""
import threading

import torch

from avatar.background import in_background, torch_threads


def test_overlapping_thread_blocks_restore_the_count_in_force_before_them():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

        def first():                          # enters first, leaves while the second is inside
            with torch_threads(1):
                first_in.set()
                second_in.wait(5)
            first_out.set()

        def second():
            first_in.wait(5)
            with torch_threads(1):
                second_in.set()
                first_out.wait(5)
                inside = torch.get_num_threads()
            return inside

        a, b = in_background(first), in_background(second)
        a.result(10)
        assert b.result(10) == 1             # the first block's end did not lift the second's
        assert torch.get_num_threads() == 2  # and the last end restored what was there
    finally:
        torch.set_num_threads(before)
