"""Shared set-up for the data-parallel and ZeRO tests."""

import pytest
from _parallel_helpers import reference_losses, reference_state, tiny_data, tiny_model


@pytest.fixture(scope="session")
def setup():
    """(model, data, one-device reference weights, one-device reference losses), computed once."""
    model, data = tiny_model(), tiny_data()
    return model, data, reference_state(model, data), reference_losses(model, data)
