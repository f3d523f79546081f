"""Shared fixtures."""

import pytest

from softgrad import losses as L


@pytest.fixture(params=["native", "fused"])
def loss_path(request, monkeypatch):
    """Run a test on both implementations of every loss: the native compositions (small inputs) and the
    fused Functions (large inputs), by moving the size threshold that chooses between them."""
    monkeypatch.setattr(L, "FUSED_MIN_NUMEL", 2**62 if request.param == "native" else 0)
    return request.param
