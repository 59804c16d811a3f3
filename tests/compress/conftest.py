"""Shared set-up for the quantization tests."""

import pytest

from minillm.threads import one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    """Every compress test runs on one torch thread: tiny matmuls on 2 shared cores run many times faster."""
    with one_thread():
        yield
