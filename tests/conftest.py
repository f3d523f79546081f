"""Shared fixtures."""

import pytest

from softgrad import losses as L


@pytest.fixture(params=["native", "fused"])
def loss_path(request):
    """Run a test on both implementations of every loss: the native compositions (small inputs) and the
    fused Functions (large inputs), chosen for every call by :func:`softgrad.losses.implementation`."""
    with L.implementation(request.param):
        yield request.param
