"""Noisy Softmax's classifier head: its home is :mod:`softgrad.losses.noisy` (one file per method); this
module keeps the import path the README documents."""

from .losses.noisy import NOISE_KINDS, NOISE_SIGNS, NoisySoftmaxHead, check_noise, noisy_logits  # noqa: F401

__all__ = ["NOISE_KINDS", "NOISE_SIGNS", "check_noise", "noisy_logits", "NoisySoftmaxHead"]
