"""minillm.threads: the one place the course sets torch's CPU thread count."""

import pytest
import torch

from minillm.threads import num_threads, one_thread

pytestmark = pytest.mark.foundation


def test_num_threads_sets_and_restores():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_restores_after_an_exception():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with one_thread():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_none_leaves_the_setting_alone_and_works_as_a_decorator():
    before = torch.get_num_threads()
    with num_threads(None):
        assert torch.get_num_threads() == before

    @one_thread()
    def inner() -> int:
        return torch.get_num_threads()

    assert inner() == 1 and torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_refused_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="threads must be a positive int"):
        with num_threads(bad):
            pass
