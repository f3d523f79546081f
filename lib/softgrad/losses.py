"""Softmax-cross-entropy variants that change the target-gradient profile g(p_t).

Notation (shapes): logits ``z`` are ``(N, C)``, ``(C,)`` or ``(N, C, d1, ..., dk)`` (class dimension 1, as
``nn.CrossEntropyLoss``); ``target`` holds integer class ids of shape ``(N,)``, ``()`` or ``(N, d1, ..., dk)``.
Below, rows are flattened samples: ``p = softmax(z)``, ``q`` the (optionally label-smoothed) target
distribution. For plain cross-entropy ``dL/dz = p - q``; the gradient on the target logit has magnitude
``g(p_t) = 1 - p_t``. Every method here changes that curve:

===================  =====================================================  ==========================
name                 per-sample loss                                        paper
===================  =====================================================  ==========================
``ce``               ``-sum_i q_i log p_i``                                 baseline
``temperature``      ``CE(beta * z, t)``                                    Agarwala et al. 2020
``gradient_decay``   ``log(beta + sum_{i!=t} exp(z_i - z_t))``              Zhang, Xie, Chen 2022
``sgt``              forward CE; backward ``softmax(alpha log p) - q``     Das et al. 2021
``as_softmax``       CE on logits with ``p_t - p_i > delta`` masked out     Lv et al. 2025
``sparse_softmax``   ``logsumexp(top-k(z)) - z_t``                          Sun et al. 2021
``sparsemax``        sparsemax loss (= ``entmax.sparsemax_loss``)           Martins & Astudillo 2016
``entmax15``         1.5-entmax loss (= ``entmax.entmax15_loss``)           Peters et al. 2019
===================  =====================================================  ==========================

Noisy Softmax (Chen, Deng, Du 2017) perturbs the target logit using the last layer's weights and
features, so it is a classifier head: :class:`softgrad.noisy.NoisySoftmaxHead`. Warm-up schedules and
AS-Speed's rule are in :mod:`softgrad.schedules`; the g(p) profiles and SPEC's identities (analysis tools)
in :mod:`softgrad.profiles`.

API, following entmax/optax/timm: a pure function per loss returning per-sample losses with the target's
shape (ignored samples get 0), a thin :class:`SoftmaxLoss` module with ``nn.CrossEntropyLoss``'s options
(``weight``, ``ignore_index``, ``reduction``, ``label_smoothing`` where the method defines it), and one
checked factory :func:`make_loss`. ``weight`` (C,) multiplies each sample's loss by ``weight[target]`` and
the mean divides by the summed weights, as in PyTorch; with label smoothing the smoothing term is weighted
per class, also as in PyTorch.

No loss reads a device value: no host synchronisation per call, and every loss works under
``torch.compile(fullgraph=True)``. Target *values* are therefore not range-checked per call (shapes and
dtypes are); the trainer validates labels once at load time, and :func:`check_targets` (or
``SOFTGRAD_CHECK_TARGETS=1``) turns a per-call check with a named error on for debugging.

Speed: two implementations of one formula, chosen by size (:data:`FUSED_MIN_NUMEL`). Small inputs (a
training batch of a small classifier: 128 x 10) cost per-op overhead, not memory traffic, so there the losses
are compositions of native ops ending in PyTorch's own ``F.cross_entropy`` (its fused weighting, ignoring and
reduction), with the fewest dispatches and autograd nodes. Large inputs cost memory passes, so there the
non-trivial losses are one-pass ``torch.autograd.Function`` s built on the native softmax; they save the
probabilities once and form the gradient in a single output pass in backward. The two agree to rounding
(the tests run every check on both); ``benchmarks/losses.py`` measures both against ``F.cross_entropy``.
Half-precision inputs are computed in float32 and the loss is returned in float32.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "REDUCTIONS",
    "check_targets",
    "cross_entropy",
    "temperature_ce",
    "gradient_decay",
    "sgt",
    "as_softmax",
    "as_softmax_multilabel",
    "sparse_softmax",
    "sparsemax",
    "entmax15",
    "zero_loss_mask",
    "implementation",
    "SoftmaxLoss",
    "make_loss",
    "loss_params",
]

REDUCTIONS = ("mean", "sum", "none")

# --------------------------------------------------------------------------------------------
# validation (host-side only: shapes, dtypes, parameter values; never a device value)
# --------------------------------------------------------------------------------------------


def _check_range(name: str, value, lo, hi, lo_open: bool, hi_open: bool) -> float:
    """Return float(value) or raise ValueError naming the parameter and the allowed interval."""
    if torch.compiler.is_compiling():
        # under torch.compile a parameter may be traced symbolically, and the module checked it when built
        return value
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or math.isnan(v):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


_CHECK_TARGETS = os.environ.get("SOFTGRAD_CHECK_TARGETS", "0") == "1"


@contextlib.contextmanager
def check_targets(enabled: bool = True):
    """Within this block every loss checks that target values lie in ``[0, C-1]`` or equal ``ignore_index``
    and raises a ValueError naming them. Off by default: the check reads a device value (a host sync per
    call on GPUs, a graph break under ``torch.compile``); out-of-range targets then fail inside the
    indexing kernel. ``SOFTGRAD_CHECK_TARGETS=1`` turns it on process-wide."""
    global _CHECK_TARGETS
    prev, _CHECK_TARGETS = _CHECK_TARGETS, enabled
    try:
        yield
    finally:
        _CHECK_TARGETS = prev


def _check_label_smoothing(label_smoothing) -> float:
    return _check_range("label_smoothing", label_smoothing, 0.0, 1.0, False, False)


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    """Types, dtypes and shapes, as ``nn.CrossEntropyLoss`` accepts them (class indices only)."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise ValueError("logits and target must be torch.Tensor")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor (float16/bfloat16/float32/float64), got dtype {logits.dtype}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"target must be an integer tensor of class indices, got dtype {target.dtype}")
    if logits.dim() == 0:
        raise ValueError("logits must have shape (C,), (N, C) or (N, C, d1, ..., dk), got a scalar")
    want = () if logits.dim() == 1 else (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"target must have shape {want} to match logits {tuple(logits.shape)} "
                         f"(N, C, d1, ..., dk -> N, d1, ..., dk), got shape {tuple(target.shape)}")


def _check_weight(weight, logits: Tensor) -> None:
    if weight is None:
        return
    C = logits.shape[0] if logits.dim() == 1 else logits.shape[1]
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or tuple(weight.shape) != (C,):
        got = f"{type(weight).__name__} {tuple(weight.shape)} {weight.dtype}" if isinstance(weight, Tensor) else repr(weight)
        raise ValueError(f"weight must be a floating-point tensor of shape (C,) = ({C},), got {got}")


def _check_target_range(target: Tensor, valid: Tensor, n_classes: int, ignore_index: int) -> None:
    bad = valid & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        raise ValueError(
            f"target values must be in [0, {n_classes - 1}] (num_classes={n_classes}) or ignore_index={ignore_index}; "
            f"got {target[bad][:5].tolist()}"
        )


@dataclass
class _Rows:
    """Inputs flattened to rows: ``z (M, C)`` (float32 or wider), ``target (M,)`` with ignored entries
    replaced by 0 so they can index, ``valid (M,)`` float mask, ``w (M,)`` the row multiplier
    (``valid * weight[target]``), ``weight`` (C,) or None, and the per-sample output shape."""

    z: Tensor
    target: Tensor
    valid: Tensor
    w: Tensor
    weight: Tensor | None
    shape: tuple

    def out(self, per_row: Tensor) -> Tensor:
        return per_row.reshape(self.shape)


def _flatten(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Logits as rows ``(M, C)`` and targets ``(M,)``, from ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``."""
    if logits.dim() == 1:  # unbatched (C,) with a scalar target
        return logits.unsqueeze(0), target.reshape(1)
    if logits.dim() == 2:
        return logits, target
    # (N, C, d1, ..., dk): classes last, then one row per (n, d1, ..., dk)
    return logits.movedim(1, -1).reshape(-1, logits.shape[1]), target.reshape(-1)


def _rows(logits: Tensor, target: Tensor, ignore_index: int, weight: Tensor | None = None) -> _Rows:
    _check_shapes(logits, target)
    _check_weight(weight, logits)
    z, t = _flatten(logits, target)
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    t = t.long()
    valid = t != ignore_index
    if _CHECK_TARGETS:
        _check_target_range(t, valid, z.shape[1], ignore_index)
    safe = torch.where(valid, t, torch.zeros_like(t))
    vf = valid.to(z.dtype)
    weight = weight.to(z.dtype) if weight is not None else None
    # a distinct tensor even without weights: torch.compile cannot trace a Function given one tensor twice
    w = vf.clone() if weight is None else vf * weight[safe]
    return _Rows(z, safe, vf, w, weight, tuple(target.shape))


#: Inputs with at least this many logits take the fused one-pass Functions; smaller ones the native
#: compositions. Below it a call is dominated by dispatch (~5 us an op, ~10 us an autograd node on a CPU)
#: and the compositions win; above it memory passes dominate and the fused Functions win (crossover
#: measured with ``benchmarks/losses.py --shapes ...``). Setting it to 0 (every call fused) or to a huge
#: value (every call native) changes results only at rounding level.
FUSED_MIN_NUMEL = 1 << 18

IMPLEMENTATIONS = ("auto", "native", "fused")


@contextlib.contextmanager
def implementation(kind: str = "auto"):
    """Within this block every loss uses one implementation: ``'native'`` (the compositions, any size),
    ``'fused'`` (the one-pass Functions, where a method has one) or ``'auto'`` (by size, the default). The
    two agree to rounding; training under each is a numerics replicate (``Config.loss_impl``)."""
    global FUSED_MIN_NUMEL
    if kind not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {list(IMPLEMENTATIONS)}, got {kind!r}")
    prev = FUSED_MIN_NUMEL
    FUSED_MIN_NUMEL = {"auto": prev, "native": 2**62, "fused": 0}[kind]
    try:
        yield
    finally:
        FUSED_MIN_NUMEL = prev


_FAST_DTYPES = (torch.float32, torch.float64)
_REDUCTION_ENUM = {"none": 0, "mean": 1, "sum": 2}  # ATen's Reduction enum, for the nll_loss ops


def _prep(logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int):
    """Checked inputs for the native compositions, in the caller's layout (no flattening): half precision
    upcast to float32, targets as int64, ``weight`` in the logits' dtype, and the class dimension."""
    # The common case, (N, C) float32/float64 logits with (N,) int64 targets, needs no conversion: checked
    # with five attribute reads (a small batch's loss costs ~100 us, so the general checks' ~10 us showed).
    if (isinstance(logits, Tensor) and isinstance(target, Tensor) and logits.dim() == 2 and target.dim() == 1
            and logits.dtype in _FAST_DTYPES and target.dtype is torch.int64 and target.shape[0] == logits.shape[0]
            and weight is None and not _CHECK_TARGETS):
        return logits, target, None, 1
    _check_shapes(logits, target)
    _check_weight(weight, logits)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    t = target.long()
    cdim = 0 if z.dim() == 1 else 1
    if _CHECK_TARGETS:
        tf = t.reshape(-1)
        _check_target_range(tf, tf != ignore_index, z.shape[cdim], ignore_index)
    return z, t, (weight.to(z.dtype) if weight is not None else None), cdim


def _native(logits: Tensor) -> bool:
    return logits.numel() < FUSED_MIN_NUMEL


def _target_index(t: Tensor, cdim: int, n_classes: int) -> Tensor:
    """Targets as an index along the class dimension; ignored entries (any ``ignore_index``, in or out of
    range) are clamped into range: ``F.cross_entropy`` ignores those samples, so what they index is unused."""
    return t.clamp(0, n_classes - 1).unsqueeze(cdim)


def _per_sample_weight(z: Tensor, t: Tensor, weight: Tensor | None, ignore_index: int, cdim: int) -> Tensor:
    """``valid * weight[t]`` with the target's shape (the multiplier ``F.cross_entropy`` applies per sample)."""
    v = (t != ignore_index).to(z.dtype)
    return v if weight is None else v * weight[t.clamp(0, z.shape[cdim] - 1)]


def _ce_native(z, t, weight, ignore_index, reduction, cdim, label_smoothing=0.0):
    return F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def _with_value(out: Tensor, value: Tensor) -> Tensor:
    """A tensor with the value ``value`` and the gradient of ``out`` (``value`` carries no gradient).

    Eager: ``value`` is copied into ``out`` through a detached alias, which records no autograd node. At a
    small batch an extra node costs about as much as the rest of the loss (~15 us on a CPU); the alias
    shares ``out``'s version counter, so autograd would refuse loudly if anything had saved ``out`` (nothing
    does: every caller passes a fresh result). Under ``torch.compile``: ``value + (out - out)``, with
    the second ``out`` detached (exactly ``value``; the compiler fuses it)."""
    if torch.compiler.is_compiling():
        return value + (out - out.detach())
    out.detach().copy_(value)
    return out


def _temperature_native(z, t, weight, ignore_index, reduction, cdim, beta=1.0, label_smoothing=0.0):
    # CE(beta z): PyTorch's fused CE does the weighting, ignoring, smoothing and reduction
    return _ce_native(z * beta if beta != 1.0 else z, t, weight, ignore_index, reduction, cdim, label_smoothing)


def _gradient_decay_native(z, t, weight, ignore_index, reduction, cdim, beta=1.0):
    # SPEC's identity J_beta(z, t) = CE(z + ln(beta) e_t, t) + ln(beta): one scatter-add into the target
    # column (out of place; its backward passes the gradient through), then the fused CE.
    if beta == 1.0:
        return _ce_native(z, t, weight, ignore_index, reduction, cdim)
    lb = math.log(beta)
    idx = _target_index(t, cdim, z.shape[cdim])
    out = _ce_native(z.scatter_add(cdim, idx, z.new_full(idx.shape, lb)), t, weight, ignore_index, reduction, cdim)
    if reduction == "mean":  # sum_n w_n (CE_n + ln beta) / sum_n w_n
        return _with_value(out, out.detach() + lb)
    w = _per_sample_weight(z, t, weight, ignore_index, cdim)
    return _with_value(out, out.detach() + lb * (w.sum() if reduction == "sum" else w))


def _as_softmax_native(z, t, weight, ignore_index, reduction, cdim, delta=0.1):
    # the official as_sm.py recipe itself: keep where (p_t - p) <= delta (ties kept), -inf elsewhere, then CE
    # (the mask from a detached view, not a no_grad block: same ops, no grad-mode switches)
    p = torch.softmax(z.detach(), cdim)
    keep = (p.gather(cdim, _target_index(t, cdim, z.shape[cdim])) - p) <= delta
    # dropped classes enter as z - inf = -inf through an added constant mask: its backward node passes the
    # gradient through untouched (where's would compute a masked copy); CE's own gradient there is exactly 0
    return _ce_native(z + torch.where(keep, 0.0, -math.inf), t, weight, ignore_index, reduction, cdim)


class _SGTSmoothed(torch.autograd.Function):
    """Label-smoothed SGT on rows ``z (M, C)``, ``t (M,)`` from ATen's CE pieces. Forward: ``F.cross_entropy``'s
    value (same weighting, ignoring, smoothing and reduction). Backward: ``G = dL/d(log p)`` as PyTorch forms it
    (``nll_loss_backward``, plus the smoothing term ``-(eps/C) w_c`` on valid rows), pushed through
    ``log_softmax`` *as if its output were* ``log softmax(alpha z)``: ``G - softmax(alpha z) sum(G)``, the SGT
    gradient ``a_n softmax(alpha log p) - ...`` (= the gradient of ``CE(alpha z) / alpha``, SPEC's identity)."""

    @staticmethod
    def forward(ctx, z: Tensor, t: Tensor, weight, ignore_index: int, reduction: str, alpha: float, eps: float):
        # the value is PyTorch's own label-smoothed CE; the mean's denominator is its total weight
        out = F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=eps)
        total_weight = (_per_sample_weight(z, t, weight, ignore_index, 1).sum() if reduction == "mean"
                        else out.new_ones(()))
        ctx.save_for_backward(z, t, total_weight, *(() if weight is None else (weight,)))
        ctx.args = (ignore_index, reduction, alpha, eps)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        z, t, total_weight, *weight = ctx.saved_tensors
        weight = weight[0] if weight else None
        ignore_index, reduction, alpha, eps = ctx.args
        la = torch.log_softmax(z * alpha if alpha != 1.0 else z, 1)
        G = torch.ops.aten.nll_loss_backward(g, la, t, weight, _REDUCTION_ENUM[reduction], ignore_index, total_weight)
        # G = (1 - eps) G_nll - (eps / C) (g / total weight) valid_n w_c
        s = g * (eps / z.shape[1])
        r = (t != ignore_index).to(z.dtype) * (s / total_weight if reduction == "mean" else s)
        G = G.mul_(1.0 - eps).sub_(r.unsqueeze(1) if weight is None else r.unsqueeze(1) * weight)
        return torch.ops.aten._log_softmax_backward_data(G, la, 1, z.dtype), None, None, None, None, None, None


def _sgt_native(z, t, weight, ignore_index, reduction, cdim, alpha=1.0, label_smoothing=0.0):
    # Without smoothing: x = z (a clone, then alpha z written into it: _with_value) has the value alpha z
    # (rounded as z * alpha) and dx/dz = I, so F.cross_entropy(x)'s gradient with respect to z is
    # softmax(alpha z) - onehot, the SGT gradient (SPEC: that of CE(alpha z) / alpha), with its own
    # weighting, ignoring and reduction; its value is then replaced by the forward value CE(z). One extra
    # node (the clone's, which passes the gradient through), no Python Function. With smoothing, _SGTSmoothed.
    if alpha == 1.0:
        return _ce_native(z, t, weight, ignore_index, reduction, cdim, label_smoothing)
    if label_smoothing:
        out = _SGTSmoothed.apply(*_flatten(z, t), weight, ignore_index, reduction, alpha, label_smoothing)
        return out.reshape(t.shape) if reduction == "none" else out
    zd = z.detach()
    out = _ce_native(_with_value(z.clone(), zd * alpha), t, weight, ignore_index, reduction, cdim)
    return _with_value(out, _ce_native(zd, t, weight, ignore_index, reduction, cdim))


# --------------------------------------------------------------------------------------------
# the fused kernels
# --------------------------------------------------------------------------------------------
#
# temperature, gradient_decay, sgt and as_softmax have a gradient of the form dL/dz = w_n (r_n - q_n)
# per row n, with r a probability vector derived from softmax and w a per-row weight:
#   temperature:     r = softmax(beta z),                      w = beta
#   gradient_decay:  r = softmax(z),                           w = 1 / (1 - (1 - beta) p_t)
#   sgt:             r = softmax(alpha log p) (backward only), w = 1
#   as_softmax:      r = masked renormalised softmax(z),       w = 1
# (times the row multiplier valid * weight[t]), so backward is one read of r and one write of the
# gradient, plus an O(N) fix-up of the target column. Nothing is modified in place on saved tensors,
# so retain_graph=True stays correct.


def _target_fixup(grad: Tensor, target: Tensor, value: Tensor) -> Tensor:
    """grad[n, target[n]] += value[n] without touching the rest of the row (O(N))."""
    return grad.scatter_add_(1, target.unsqueeze(1), value.unsqueeze(1))


def _softmax_logp_t(z: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """p = softmax(z) (one fused native pass) and log p_t, shapes (N, C) and (N,), with no host sync.

    softmax computes p_i = exp(z_i - m) / S with m the row max, so the largest probability is exactly
    1/S (exp(0) = 1) and log p_t = (z_t - m) + log(max p): as accurate as log_softmax, finite where p_t
    underflows to 0, and cheaper than log_softmax or logsumexp (two vectorised max reductions; ``amax``,
    not ``max(dim)``, which also computes indices and is ~7x slower on CPU).
    """
    p = torch.softmax(z, dim=1)
    logp_t = (z.gather(1, idx) - z.amax(dim=1, keepdim=True) + torch.log(p.amax(dim=1, keepdim=True))).squeeze(1)
    return p, logp_t


class _TemperatureCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, beta: float) -> Tensor:
        p, logp_t = _softmax_logp_t(z * beta if beta != 1.0 else z, target.unsqueeze(1))
        loss = -logp_t * w
        ctx.save_for_backward(p, target, w)
        ctx.beta = beta
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, w_row = ctx.saved_tensors
        w = gout * w_row * ctx.beta
        grad = p * w.unsqueeze(1)
        return _target_fixup(grad, target, -w), None, None, None


def _gradient_decay_value(neg_logp_t: Tensor, beta: float) -> Tensor:
    """J_beta from a = -log p_t >= 0 (the plain CE value).

    sum_{i!=t} exp(z_i - z_t) = (1 - p_t)/p_t = expm1(a), so J = log(beta + expm1(a)).
    expm1 overflows for a > ~88 (float32); there J = a + log1p((beta - 1) e^{-a}) is exact and
    stable, while for small a the first form avoids cancellation when beta is small.
    """
    a = neg_logp_t
    small = torch.log(torch.expm1(a.clamp(max=20.0)) + beta)
    large = a + torch.log1p((beta - 1.0) * torch.exp(-a))
    return torch.where(a < 20.0, small, large)


class _GradientDecay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, beta: float) -> Tensor:
        p, logp_t = _softmax_logp_t(z, target.unsqueeze(1))
        loss = _gradient_decay_value(-logp_t, beta) * w
        # weight 1/(1 - (1 - beta) p_t) >= 1/max(1, beta) > 0: never divides by zero for beta > 0
        w_row = w / (1.0 - (1.0 - beta) * torch.exp(logp_t))
        ctx.save_for_backward(p, target, w_row)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, w_row = ctx.saved_tensors
        w = gout * w_row
        grad = p * w.unsqueeze(1)
        return _target_fixup(grad, target, -w), None, None, None


class _SGT(torch.autograd.Function):
    """Forward: -(1-eps) w_t log p_t - (eps/C) sum_c w_c log p_c (PyTorch's weighted label smoothing; w = 1
    without class weights). Backward: the same expression's gradient with p replaced by
    p' = softmax(alpha log p): grad = p' a_n - (1-eps) w_t onehot - (eps/C) w, a_n = (1-eps) w_t + (eps/C) sum w."""

    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, w: Tensor, weight, alpha: float, eps: float):
        logp = torch.log_softmax(z, dim=1)
        C = z.shape[1]
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = (1.0 - eps) * nll * w
        if eps:
            smooth = -(logp.mean(dim=1) if weight is None else (logp * weight).sum(dim=1) / C)
            loss = loss + eps * smooth * valid
        # p' = p^alpha / sum p^alpha = softmax(alpha log p). log p <= 0, so exp(alpha log p) <= 1
        # never overflows and needs no max-subtraction; build it in place in logp's buffer (not
        # exposed to anyone) and keep the row sums, so backward is one multiply.
        e = logp.mul_(alpha).exp_() if alpha != 1.0 else logp.exp_()
        wsum = float(C) if weight is None else weight.sum()
        a = (1.0 - eps) * w + (eps / C) * wsum * valid
        ctx.save_for_backward(e, e.sum(dim=1), target, valid, w, a, *(() if weight is None else (weight,)))
        ctx.eps, ctx.weighted = eps, weight is not None
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        e, e_sum, target, valid, w, a, *weight = ctx.saved_tensors
        eps = ctx.eps
        grad = e * (gout * a / e_sum).unsqueeze(1)
        if eps:
            gv = (eps / e.shape[1]) * gout * valid
            grad.sub_(gv.unsqueeze(1) * weight[0] if ctx.weighted else gv.unsqueeze(1))
        return _target_fixup(grad, target, -(1.0 - eps) * gout * w), None, None, None, None, None, None


class _ASSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, w: Tensor, delta: float):
        idx = target.unsqueeze(1)
        p, logp_t = _softmax_logp_t(z, idx)
        p_t = p.gather(1, idx)
        # Keep class i iff p_t - p_i <= delta: the official as_sm.py's comparison, written the same way (so
        # ties, p_t - p_i = 0, are kept at every delta, delta = 0 included); no gradient through the mask.
        # Three memory passes: the difference, compared in place to a 0/1 float, multiplied into p.
        keep = torch.sub(p_t, p).le_(delta)
        u = p.mul_(keep)  # p with dropped classes zeroed, in p's (private) buffer
        u.scatter_(1, idx, 0.0)  # zero the target so the sum of kept rivals has no cancellation
        s_other = u.sum(dim=1)
        p_t = p_t.squeeze(1)
        s_kept = p_t + s_other
        # loss = -log(p_t / S_kept) = log1p(S_other / p_t); exactly 0 when no rival is kept. If p_t
        # underflows to 0, every rival is kept (S_kept = 1) and the loss is -log p_t.
        tiny = torch.finfo(u.dtype).tiny
        raw = torch.where(p_t > tiny, torch.log1p(s_other / p_t.clamp(min=tiny)), -logp_t)
        zero = (raw == 0) & (valid > 0)
        ctx.save_for_backward(u, target, w, s_other, s_kept)
        ctx.mark_non_differentiable(zero)
        return raw * w, zero

    @staticmethod
    def backward(ctx, gout: Tensor, _gzero):
        u, target, w_row, s_other, s_kept = ctx.saved_tensors
        w = gout * w_row / s_kept
        grad = u * w.unsqueeze(1)  # kept rivals: p_i / S_kept
        # target: p_t/S_kept - 1 = -S_other/S_kept (no cancellation)
        return _target_fixup(grad, target, -w * s_other), None, None, None, None


class _SparseSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, k: int, keep_target: bool) -> Tensor:
        vals, idx = z.topk(k, dim=1)  # O(NC) read, no (N, C) write
        z_t = z.gather(1, target.unsqueeze(1))
        if keep_target:  # K = top-k U {t}: append z_t (as -inf when it is already among the top-k)
            in_top = (idx == target.unsqueeze(1)).any(dim=1, keepdim=True)
            vals = torch.cat([vals, torch.where(in_top, torch.full_like(z_t, -math.inf), z_t)], dim=1)
        lse = torch.logsumexp(vals, dim=1, keepdim=True)
        loss = (lse - z_t).squeeze(1) * w
        ctx.save_for_backward(torch.exp(vals - lse), idx, target, w)
        ctx.shape, ctx.keep_target = z.shape, keep_target
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        probs, idx, target, w_row = ctx.saved_tensors
        w = (gout * w_row).unsqueeze(1)
        grad = torch.zeros(ctx.shape, dtype=probs.dtype, device=probs.device)
        k = idx.shape[1]
        grad.scatter_(1, idx, probs[:, :k] * w)
        fix = probs[:, k:] * w - w if ctx.keep_target else -w
        grad.scatter_add_(1, target.unsqueeze(1), fix)
        return grad, None, None, None, None


# --------------------------------------------------------------------------------------------
# pure functions: per-sample losses with the target's shape; ignored samples are 0
# --------------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0, *, weight: Tensor | None = None,
                  ignore_index: int = -100) -> Tensor:
    """Plain softmax cross-entropy, ``-sum_i q_i log softmax(z)_i``; equals ``F.cross_entropy(reduction='none')``.

    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> target's shape. ``q = (1-eps) onehot + eps/C``.
    Target-gradient profile: ``g(p) = 1 - p`` (without smoothing).
    """
    eps = _check_label_smoothing(label_smoothing)
    return _ce_native(*_prep(logits, target, weight, ignore_index)[:3], ignore_index, "none", None, eps)


def temperature_ce(logits: Tensor, target: Tensor, beta: float = 1.0, label_smoothing: float = 0.0, *,
                   weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Inverse-temperature cross-entropy ``L = CE(beta * z, t)`` (Agarwala et al., arXiv 2010.07344).

    Gradient ``beta * (softmax(beta z) - q)``; target profile ``g = beta (1 - softmax(beta z)_t)``.
    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> target's shape; ``beta > 0``; ``beta = 1`` is CE.
    With ``label_smoothing`` it is ``F.cross_entropy(beta * z, t, label_smoothing=eps)``.
    """
    beta = _check_range("beta", beta, 0.0, math.inf, True, True)
    eps = _check_label_smoothing(label_smoothing)
    if eps or _native(logits):
        z, t, w, cdim = _prep(logits, target, weight, ignore_index)
        return _temperature_native(z, t, w, ignore_index, "none", cdim, beta, eps)
    r = _rows(logits, target, ignore_index, weight)
    return r.out(_TemperatureCE.apply(r.z, r.target, r.w, beta))


def gradient_decay(logits: Tensor, target: Tensor, beta: float = 1.0, *, weight: Tensor | None = None,
                   ignore_index: int = -100) -> Tensor:
    """Probability-dependent gradient-decay softmax loss (Zhang, Xie, Chen, arXiv 2210.17145).

    ``p_hat_t = e^{z_t} / (sum_{i!=t} e^{z_i} + beta e^{z_t})``,
    ``J_beta = -log p_hat_t = log(beta + sum_{i!=t} e^{z_i - z_t})``.
    Identity: ``J_beta(z, t) = CE(z + ln(beta) e_t, t) + ln beta`` (an additive target margin
    ``m = -ln beta``). Gradient in the plain ``p = softmax(z)``:
    ``dJ/dz = (p - onehot) / (1 - (1 - beta) p_t)``, so ``g_beta(p) = (1-p)/(1-(1-beta)p)``.
    ``J`` can be negative for ``beta < 1``. logits ``(N, C[, d...])`` -> target's shape.
    """
    beta = _check_range("beta", beta, 0.0, math.inf, True, True)
    if _native(logits):
        z, t, w, cdim = _prep(logits, target, weight, ignore_index)
        return _gradient_decay_native(z, t, w, ignore_index, "none", cdim, beta)
    r = _rows(logits, target, ignore_index, weight)
    return r.out(_GradientDecay.apply(r.z, r.target, r.w, beta))


def sgt(logits: Tensor, target: Tensor, alpha: float = 1.0, label_smoothing: float = 0.0, *,
        weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Softmax Gradient Tampering / PowerGrad (Das et al., arXiv 2111.12495).

    Forward: ordinary (label-smoothed) CE. Backward only: ``dL/dz := softmax(alpha log p) - q``
    with ``p' = p^alpha / sum_j p_j^alpha``, ``0 < alpha <= 1``; ``q = (1-eps) onehot + eps/C``
    (the official code's smoothing). Identity: ``softmax(alpha log p) = softmax(alpha z)``, so the
    gradient equals that of ``(1/alpha) CE(alpha z, q)``. logits ``(N, C[, d...])`` -> target's shape.
    """
    alpha = _check_range("alpha", alpha, 0.0, 1.0, True, False)
    eps = _check_label_smoothing(label_smoothing)
    if _native(logits):
        z, t, w, cdim = _prep(logits, target, weight, ignore_index)
        return _sgt_native(z, t, w, ignore_index, "none", cdim, alpha, eps)
    r = _rows(logits, target, ignore_index, weight)
    return r.out(_SGT.apply(r.z, r.target, r.valid, r.w, r.weight, alpha, eps))


def as_softmax(logits: Tensor, target: Tensor, delta: float = 0.1, *, weight: Tensor | None = None,
               ignore_index: int = -100, return_zero_mask: bool = False):
    """Adaptive Sparse Softmax (Lv et al., arXiv 2508.03175; official ``as_sm.py``).

    Keep class ``i`` iff ``p_t - p_i <= delta`` with ``p = softmax(z)`` (no gradient through the
    mask; ties are kept); the others are set to ``-inf`` and the loss is CE on the masked logits.
    ``delta = 1`` is CE. A sample whose target beats every rival by more than ``delta`` has loss and
    gradient exactly 0. Gradient ``keep_i (p~_i - 1[i=t])``, ``p~`` the softmax over kept classes.

    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> loss of the target's shape; with
    ``return_zero_mask`` also the bool mask of :func:`zero_loss_mask` (what AS-Speed counts).
    """
    delta = _check_range("delta", delta, 0.0, 1.0, False, False)
    if _native(logits):
        z, t, w, cdim = _prep(logits, target, weight, ignore_index)
        if not return_zero_mask:
            return _as_softmax_native(z, t, w, ignore_index, "none", cdim, delta)
        raw = _as_softmax_native(z, t, None, ignore_index, "none", cdim, delta)  # unweighted, for the mask
        loss = raw if w is None else raw * _per_sample_weight(z, t, w, ignore_index, cdim)
        return loss, zero_loss_mask(raw, t, ignore_index)
    r = _rows(logits, target, ignore_index, weight)
    loss, zero = _ASSoftmax.apply(r.z, r.target, r.valid, r.w, delta)
    return (r.out(loss), r.out(zero)) if return_zero_mask else r.out(loss)


def zero_loss_mask(per_sample: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """The one definition of a zero-loss sample (AS-Speed's count): not ignored and its unweighted
    method loss exactly 0. ``per_sample`` and ``target`` of the same shape -> bool of that shape."""
    return (per_sample == 0) & (target != ignore_index)


def as_softmax_multilabel(logits: Tensor, labels: Tensor, delta: float = 0.1) -> Tensor:
    """Multi-label AS-Softmax: Su's multilabel categorical CE with the AS masking.

    ``L = log(1 + sum_{i in neg, kept} e^{z_i}) + log(1 + sum_{j in pos, kept} e^{-z_j})``;
    with ``p = softmax(z)`` over all labels (no gradient): a negative ``i`` is kept iff
    ``min_pos p - p_i <= delta``, a positive ``j`` iff ``p_j - max_neg p <= delta``.
    logits ``(N, C)``, labels ``(N, C)`` in {0, 1} -> ``(N,)``. ``delta = 1`` is the unmasked loss.
    """
    delta = _check_range("delta", delta, 0.0, 1.0, False, False)
    if not logits.is_floating_point() or logits.dim() != 2:
        raise ValueError(f"logits must be a floating-point (N, C) tensor, got {logits.dtype} {tuple(logits.shape)}")
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have the shape of logits {tuple(logits.shape)}, got {tuple(labels.shape)}")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    pos = labels.to(torch.bool)
    with torch.no_grad():
        p = torch.softmax(z, dim=1)
        min_pos = torch.where(pos, p, torch.full_like(p, math.inf)).amin(dim=1, keepdim=True)
        max_neg = torch.where(pos, torch.full_like(p, -math.inf), p).amax(dim=1, keepdim=True)
        keep_neg = ~pos & (min_pos - p <= delta)
        keep_pos = pos & (p - max_neg <= delta)
    neg_inf = torch.full_like(z, -math.inf)
    zero = torch.zeros_like(z[:, :1])
    # log(1 + sum e^{x}) = logsumexp([0, x]); -inf entries drop out exactly
    neg_term = torch.logsumexp(torch.cat([zero, torch.where(keep_neg, z, neg_inf)], dim=1), dim=1)
    pos_term = torch.logsumexp(torch.cat([zero, torch.where(keep_pos, -z, neg_inf)], dim=1), dim=1)
    return neg_term + pos_term



def sparse_softmax(logits: Tensor, target: Tensor, k: int = 5, keep_target: bool = False, *,
                   weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Sparse-softmax (Sun et al., arXiv 2112.12433): softmax restricted to the k largest logits.

    ``L = logsumexp_{i in K} z_i - z_t`` with ``K = top-k(z)``, the authors' definition (their public
    code and the paper's formula): a target outside the top-k is not added to ``K``, so its loss is
    ``lse(top-k) - z_t`` and its gradient ``-1`` on the target and the top-k softmax elsewhere.
    ``keep_target=True`` uses ``K = top-k(z) U {t}`` instead (a variant: the target always competes;
    both agree on every row whose target is among the top-k). ``k >= C`` is CE.
    logits ``(N, C[, d...])`` -> target's shape.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not isinstance(keep_target, bool):
        raise ValueError(f"keep_target must be True or False, got {keep_target!r}")
    r = _rows(logits, target, ignore_index, weight)
    return r.out(_SparseSoftmax.apply(r.z, r.target, r.w, min(k, r.z.shape[1]), keep_target))


def _sparsemax(z: Tensor) -> Tensor:
    """Sparsemax projection (Martins & Astudillo 2016), rows of ``z (M, C)``: ``p = max(z - tau, 0)`` with
    tau from the sorted logits (support: ``1 + k z_(k) > sum_{j<=k} z_(j)``)."""
    zs = z.sort(dim=1, descending=True).values
    cs = zs.cumsum(dim=1) - 1.0
    k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    support = (k * zs > cs).sum(dim=1, keepdim=True)  # >= 1 always (the top logit)
    tau = cs.gather(1, support - 1) / support.to(z.dtype)
    return (z - tau).clamp(min=0.0)


def _entmax15(z: Tensor) -> Tensor:
    """1.5-entmax projection (Peters, Niculae, Martins 2019), exact sort-based algorithm: with x = (z - max)/2,
    ``p = max(x - tau, 0)^2``, tau the largest root of ``sum max(x - tau, 0)^2 = 1`` over sorted prefixes."""
    x = (z - z.amax(dim=1, keepdim=True)) / 2
    xs = x.sort(dim=1, descending=True).values
    rho = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    mean = xs.cumsum(dim=1) / rho
    mean_sq = (xs * xs).cumsum(dim=1) / rho
    delta = (1 - rho * (mean_sq - mean * mean)) / rho
    tau = mean - delta.clamp(min=0).sqrt()
    support = (tau <= xs).sum(dim=1, keepdim=True)
    return (x - tau.gather(1, support - 1)).clamp(min=0) ** 2


class _EntmaxLoss(torch.autograd.Function):
    """Fenchel-Young loss of a sparse projection: ``L = Omega(p) + (p - e_t) . z``, gradient ``p - e_t``
    (as the ``entmax`` package's losses; Omega = (1 - sum p^2)/2 for sparsemax, (1 - sum p^1.5)/0.75 for
    1.5-entmax). Written here, sort-based and branch-free, so it works under torch.compile."""

    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, kind: str) -> Tensor:
        p = _sparsemax(z) if kind == "sparsemax" else _entmax15(z)
        omega = (1 - (p * p).sum(dim=1)) / 2 if kind == "sparsemax" else (1 - (p * p.sqrt()).sum(dim=1)) / 0.75
        g = _target_fixup(p, target, -torch.ones_like(w))  # p - e_t, in p's buffer
        loss = (omega + (g * z).sum(dim=1)) * w
        ctx.save_for_backward(g, w)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        g, w = ctx.saved_tensors
        return g * (gout * w).unsqueeze(1), None, None, None


def _entmax_loss(kind: str, logits: Tensor, target: Tensor, weight, ignore_index: int) -> Tensor:
    r = _rows(logits, target, ignore_index, weight)
    return r.out(_EntmaxLoss.apply(r.z, r.target, r.w, kind))


def sparsemax(logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Sparsemax loss (Martins & Astudillo 2016). ``(N, C[, d...])`` -> target's shape.

    Equal to the ``entmax`` package's ``sparsemax_loss`` (tested), computed here so it compiles."""
    return _entmax_loss("sparsemax", logits, target, weight, ignore_index)


def entmax15(logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """1.5-entmax loss (Peters, Niculae, Martins 2019). ``(N, C[, d...])`` -> target's shape.

    Equal to the ``entmax`` package's ``entmax15_loss`` (tested), computed here so it compiles."""
    return _entmax_loss("entmax15", logits, target, weight, ignore_index)


# --------------------------------------------------------------------------------------------
# registry, module and factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    fn: Callable  # the pure per-sample function
    params: dict  # name -> default
    neutral: dict  # the setting that equals CE (empty if none)
    # (z, t, weight, ignore_index, reduction, cdim, **params) -> reduced loss: the native composition
    native: Callable | None = None
    fused: bool = True  # large inputs take the fused Function instead of ``native``


LOSSES: dict[str, _Spec] = {
    "ce": _Spec(cross_entropy, {"label_smoothing": 0.0}, {"label_smoothing": 0.0}, _ce_native, fused=False),
    "temperature": _Spec(temperature_ce, {"beta": 1.0, "label_smoothing": 0.0}, {"beta": 1.0}, _temperature_native),
    "gradient_decay": _Spec(gradient_decay, {"beta": 1.0}, {"beta": 1.0}, _gradient_decay_native),
    "sgt": _Spec(sgt, {"alpha": 1.0, "label_smoothing": 0.0}, {"alpha": 1.0}, _sgt_native),
    "as_softmax": _Spec(as_softmax, {"delta": 0.1}, {"delta": 1.0}, _as_softmax_native),
    "sparse_softmax": _Spec(sparse_softmax, {"k": 5, "keep_target": False}, {}),
    "sparsemax": _Spec(sparsemax, {}, {}),
    "entmax15": _Spec(entmax15, {}, {}),
}


def loss_params(name: str) -> dict:
    """The parameters (with defaults) that loss ``name`` accepts."""
    return dict(_spec(name).params)


def _spec(name: str) -> _Spec:
    if name not in LOSSES:
        raise ValueError(f"loss name must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


class SoftmaxLoss(nn.Module):
    """``nn.CrossEntropyLoss``-compatible module: ``loss(logits (N, C[, d...]), target (N[, d...]))``.

    Options as ``nn.CrossEntropyLoss``: ``weight`` (C,) (a buffer), ``ignore_index``, ``reduction``
    ('mean': the sum divided by the summed weights of non-ignored samples, so 0/0 -> nan as PyTorch;
    AS-Softmax's zero-loss samples stay in the denominator as in the official code; 'sum'; 'none'),
    and ``label_smoothing`` for the methods that define it (ce, temperature, sgt). The method's own
    parameters are keyword arguments and can change between steps (schedules) with :meth:`set_params`.
    """

    def __init__(self, name: str, reduction: str = "mean", ignore_index: int = -100, weight: Tensor | None = None,
                 **params):
        super().__init__()
        spec = _spec(name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if weight is not None and (not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point()):
            raise ValueError(f"weight must be a 1-D floating-point tensor of per-class weights, got {weight!r}")
        self.name, self.reduction, self.ignore_index = name, reduction, ignore_index
        self.register_buffer("weight", weight)
        self.params = dict(spec.params)
        self.set_params(**params)

    def set_params(self, **params) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for loss {self.name!r}; allowed: {sorted(self.params) or 'none'}"
            )
        new = {**self.params, **params}
        # validate eagerly with a tiny dummy call so bad values fail at construction, not mid-training
        LOSSES[self.name].fn(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), **new)
        self.params = new

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return LOSSES[self.name].fn(logits, target, weight=self.weight, ignore_index=self.ignore_index, **self.params)

    def reduce(self, per_sample: Tensor, target: Tensor) -> Tensor:
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        valid = target != self.ignore_index
        if self.weight is None:
            return per_sample.sum() / valid.sum()
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        return per_sample.sum() / (self.weight.to(per_sample.dtype)[safe] * valid).sum()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        spec = LOSSES[self.name]
        if spec.native is not None and self.reduction != "none" and (not spec.fused or _native(logits)):
            # one native composition that ends in F.cross_entropy's fused reduction (same value as below)
            z, t, w, cdim = _prep(logits, target, self.weight, self.ignore_index)
            return spec.native(z, t, w, self.ignore_index, self.reduction, cdim, **self.params)
        return self.reduce(self.per_sample(logits, target), target)

    def extra_repr(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"name={self.name!r}, {ps + ', ' if ps else ''}reduction={self.reduction!r}"


def make_loss(name: str, reduction: str = "mean", ignore_index: int = -100, weight: Tensor | None = None,
              **params) -> SoftmaxLoss:
    """Build a loss module by name, checking the name and every parameter.

    >>> make_loss("gradient_decay", beta=0.1)
    SoftmaxLoss(name='gradient_decay', beta=0.1, reduction='mean')
    """
    return SoftmaxLoss(name, reduction=reduction, ignore_index=ignore_index, weight=weight, **params)
