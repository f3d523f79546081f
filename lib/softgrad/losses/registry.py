"""The registry: every method by name, each entry declared in its own file (:class:`~.core.Method`).

Adding a method means adding one file that defines its function(s) and a ``METHOD`` entry, and listing it
here; everything that asks about a method by name (configuration checks, warm-ups, profiles, chapter 06's
protocol, colours) reads these entries.
"""

from __future__ import annotations

from . import adaptive_sparse, ce, decay, noisy, sparse, tampering, temperature
from .core import Method

__all__ = ["METHODS", "LOSSES", "COMPARED", "method", "loss_method", "loss_params"]

#: every method, in the book's order: the five papers' methods, CE, and the sparse baselines
METHODS: dict[str, Method] = {m.name: m for m in (
    ce.METHOD, temperature.METHOD, decay.METHOD, noisy.METHOD, tampering.METHOD, adaptive_sparse.METHOD,
    sparse.SPARSE_SOFTMAX, sparse.SPARSEMAX, sparse.ENTMAX15)}
#: the methods that are loss functions (``Config.loss``, :func:`softgrad.losses.make_loss`)
LOSSES: dict[str, Method] = {n: m for n, m in METHODS.items() if m.fn is not None}
#: the methods chapter 06's protocol compares (those with a default search range), CE first
COMPARED: dict[str, Method] = {n: m for n, m in METHODS.items() if m.knob is not None}


def method(name: str) -> Method:
    """The registry entry of ``name`` (any method), or a ValueError naming the allowed names."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def loss_method(name: str) -> Method:
    """The registry entry of loss ``name``, or a ValueError naming the allowed losses."""
    if name not in LOSSES:
        raise ValueError(f"loss name must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def loss_params(name: str) -> dict:
    """The parameters (with defaults) that loss ``name`` accepts."""
    return loss_method(name).defaults()
