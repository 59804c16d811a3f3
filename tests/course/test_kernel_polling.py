"""The build's and the grader's waits on a kernel socket run in short slices.

A missed zmq "readable" edge must cost at most one slice, not a cell's whole
timeout; the total timeout and the Empty at its end stay as nbclient expects.
"""

import asyncio
import time
from queue import Empty

import pytest

from minillm.course.notebooks import _client_class, _poll_in_slices

pytestmark = pytest.mark.foundation


class FakeChannel:
    """get_msg(timeout) that finds its message only once ``ready_at`` has passed, like a socket
    whose wake-up was missed: each call waits out its timeout, then looks once."""

    def __init__(self, ready_at: float | None) -> None:
        self.ready_at, self.timeouts = ready_at, []

    async def get_msg(self, timeout=None):
        self.timeouts.append(timeout)
        await asyncio.sleep(timeout)
        if self.ready_at is not None and time.monotonic() >= self.ready_at:
            return {"msg": "reply"}
        raise Empty


def test_a_message_is_picked_up_within_one_slice():
    ch = FakeChannel(ready_at=time.monotonic() + 0.1)
    _poll_in_slices(ch, slice_s=0.02)
    t = time.monotonic()
    assert asyncio.run(ch.get_msg(timeout=30)) == {"msg": "reply"}
    assert time.monotonic() - t < 1.0  # not the 30 s timeout
    assert max(ch.timeouts) <= 0.02


def test_the_total_timeout_still_ends_in_empty():
    ch = FakeChannel(ready_at=None)
    _poll_in_slices(ch, slice_s=0.02)
    t = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ch.get_msg(timeout=0.1))
    assert 0.09 <= time.monotonic() - t < 1.0


def test_no_timeout_waits_until_a_message_comes():
    ch = FakeChannel(ready_at=time.monotonic() + 0.1)
    _poll_in_slices(ch, slice_s=0.02)
    assert asyncio.run(ch.get_msg()) == {"msg": "reply"}
    assert len(ch.timeouts) >= 3


def test_the_sync_start_of_the_client_uses_the_sliced_start():
    cls = _client_class()
    # nbclient's own sync wrapper would call the base coroutine and skip the slicing.
    assert cls.start_new_kernel_client is not cls.__mro__[1].start_new_kernel_client
