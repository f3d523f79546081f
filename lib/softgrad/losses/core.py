"""The shared core of :mod:`softgrad.losses`: input checks, the native/fused switch, the pieces both
implementations use, the shared backward of the fused Functions, and the registry's record types.

Notation (shapes): logits ``z`` are ``(N, C)``, ``(C,)`` or ``(N, C, d1, ..., dk)`` (class dimension 1, as
``nn.CrossEntropyLoss``); ``target`` holds integer class ids of shape ``(N,)``, ``()`` or ``(N, d1, ..., dk)``,
or class probabilities of the logits' shape (a floating-point target, as ``nn.CrossEntropyLoss`` reads it:
:func:`probability_per_sample`). Rows are flattened samples: ``p = softmax(z)``, ``q`` the (optionally
label-smoothed) target distribution.

Speed: two implementations of one formula, chosen by size (:data:`FUSED_MIN_NUMEL`, :func:`use_native`).
Small inputs (a training batch of a small classifier: 128 x 10) cost per-op overhead, not memory traffic, so
there the losses are compositions of native ops ending in PyTorch's own ``F.cross_entropy`` (its fused
weighting, ignoring and reduction), with the fewest dispatches and autograd nodes. Large inputs cost memory
passes, so there the non-trivial losses are one-pass ``torch.autograd.Function`` s built on the native
softmax; they save the probabilities once and form the gradient in a single output pass in backward
(:func:`row_gradient`). The two agree to rounding (the tests run every check on both);
``benchmarks/losses.py`` measures both against ``F.cross_entropy``. Half-precision inputs are computed in
float32 and the loss is returned in float32.

No loss reads a device value: no host synchronisation per call, and every loss works under
``torch.compile(fullgraph=True)``. Target *values* are therefore not range-checked per call (shapes and
dtypes are); the trainer validates labels once at load time, and :func:`check_targets` (or
``SOFTGRAD_CHECK_TARGETS=1``) turns a per-call check with a named error on for debugging.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["REDUCTIONS", "IMPLEMENTATIONS", "FUSED_MIN_NUMEL", "check_range", "check_targets", "implementation",
           "use_native", "is_value", "Param", "Warmup", "Method", "Schedule", "SCHEDULE_SHAPES", "per_sample", "reduced",
           "reduce_losses", "symmetric_logits", "row_gradient", "is_probability_target", "probability_per_sample",
           "weighted_probabilities"]

REDUCTIONS = ("mean", "sum", "none")

# --------------------------------------------------------------------------------------------
# validation (host-side only: shapes, dtypes, parameter values; never a device value)
# --------------------------------------------------------------------------------------------


def check_range(name: str, value, lo, hi, lo_open: bool, hi_open: bool) -> float:
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


def check_shapes(logits: Tensor, target: Tensor) -> None:
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


def check_weight(weight, logits: Tensor) -> None:
    if weight is None:
        return
    C = logits.shape[0] if logits.dim() == 1 else logits.shape[1]
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or tuple(weight.shape) != (C,):
        got = f"{type(weight).__name__} {tuple(weight.shape)} {weight.dtype}" if isinstance(weight, Tensor) else repr(weight)
        raise ValueError(f"weight must be a floating-point tensor of shape (C,) = ({C},), got {got}")


def check_target_range(target: Tensor, valid: Tensor, n_classes: int, ignore_index: int) -> None:
    bad = valid & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        raise ValueError(
            f"target values must be in [0, {n_classes - 1}] (num_classes={n_classes}) or ignore_index={ignore_index}; "
            f"got {target[bad][:5].tolist()}"
        )


@dataclass
class Rows:
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


def flatten(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Logits as rows ``(M, C)`` and targets ``(M,)``, from ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``."""
    if logits.dim() == 1:  # unbatched (C,) with a scalar target
        return logits.unsqueeze(0), target.reshape(1)
    if logits.dim() == 2:
        return logits, target
    # (N, C, d1, ..., dk): classes last, then one row per (n, d1, ..., dk)
    return logits.movedim(1, -1).reshape(-1, logits.shape[1]), target.reshape(-1)


def rows(logits: Tensor, target: Tensor, ignore_index: int, weight: Tensor | None = None) -> Rows:
    check_shapes(logits, target)
    check_weight(weight, logits)
    z, t = flatten(logits, target)
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    t = t.long()
    valid = t != ignore_index
    if _CHECK_TARGETS:
        check_target_range(t, valid, z.shape[1], ignore_index)
    safe = torch.where(valid, t, torch.zeros_like(t))
    vf = valid.to(z.dtype)
    weight = weight.to(z.dtype) if weight is not None else None
    # a distinct tensor even without weights: torch.compile cannot trace a Function given one tensor twice
    w = vf.clone() if weight is None else vf * weight[safe]
    return Rows(z, safe, vf, w, weight, tuple(target.shape))


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
REDUCTION_ENUM = {"none": 0, "mean": 1, "sum": 2}  # ATen's Reduction enum, for the nll_loss ops


def prep(logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int):
    """Checked inputs for the native compositions, in the caller's layout (no flattening): half precision
    upcast to float32, targets as int64, ``weight`` in the logits' dtype, and the class dimension."""
    # The common case, (N, C) float32/float64 logits with (N,) int64 targets, needs no conversion: checked
    # with five attribute reads (a small batch's loss costs ~100 us, so the general checks' ~10 us showed).
    if (isinstance(logits, Tensor) and isinstance(target, Tensor) and logits.dim() == 2 and target.dim() == 1
            and logits.dtype in _FAST_DTYPES and target.dtype is torch.int64 and target.shape[0] == logits.shape[0]
            and weight is None and not _CHECK_TARGETS):
        return logits, target, None, 1
    check_shapes(logits, target)
    check_weight(weight, logits)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    t = target.long()
    cdim = 0 if z.dim() == 1 else 1
    if _CHECK_TARGETS:
        tf = t.reshape(-1)
        check_target_range(tf, tf != ignore_index, z.shape[cdim], ignore_index)
    return z, t, (weight.to(z.dtype) if weight is not None else None), cdim


def use_native(logits: Tensor) -> bool:
    """The native/fused switch, in one place: the native compositions below :data:`FUSED_MIN_NUMEL` logits."""
    return logits.numel() < FUSED_MIN_NUMEL


def is_value(param, value: float) -> bool:
    """Whether a method parameter is the Python number ``value`` (a shortcut such as "beta = 1 is CE"). A
    parameter may also be a per-row column, a float tensor of shape ``(M, 1)`` for logits ``(M, C)``, one
    value per row, broadcast over the classes (the stacked trainer, :mod:`softgrad.stacked`, passes one per
    member); a column never takes a shortcut, so its rows get exactly the formula of the scalar setting."""
    return not isinstance(param, Tensor) and param == value


def target_index(t: Tensor, cdim: int, n_classes: int) -> Tensor:
    """Targets as an index along the class dimension; ignored entries (any ``ignore_index``, in or out of
    range) are clamped into range: ``F.cross_entropy`` ignores those samples, so what they index is unused."""
    return t.clamp(0, n_classes - 1).unsqueeze(cdim)


def per_sample_weight(z: Tensor, t: Tensor, weight: Tensor | None, ignore_index: int, cdim: int) -> Tensor:
    """``valid * weight[t]`` with the target's shape (the multiplier ``F.cross_entropy`` applies per sample)."""
    v = (t != ignore_index).to(z.dtype)
    return v if weight is None else v * weight[t.clamp(0, z.shape[cdim] - 1)]


def ce_native(z, t, weight, ignore_index, reduction, cdim, label_smoothing=0.0):
    return F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def with_value(out: Tensor, value: Tensor) -> Tensor:
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



# --------------------------------------------------------------------------------------------
# the fused kernels' shared pieces
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


def target_fixup(grad: Tensor, target: Tensor, value: Tensor) -> Tensor:
    """grad[n, target[n]] += value[n] without touching the rest of the row (O(N))."""
    return grad.scatter_add_(1, target.unsqueeze(1), value.unsqueeze(1))


def softmax_logp_t(z: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """p = softmax(z) (one fused native pass) and log p_t, shapes (N, C) and (N,), with no host sync.

    softmax computes p_i = exp(z_i - m) / S with m the row max, so the largest probability is exactly
    1/S (exp(0) = 1) and log p_t = (z_t - m) + log(max p): as accurate as log_softmax, finite where p_t
    underflows to 0, and cheaper than log_softmax or logsumexp (two vectorised max reductions; ``amax``,
    not ``max(dim)``, which also computes indices and is ~7x slower on CPU).
    """
    p = torch.softmax(z, dim=1)
    logp_t = (z.gather(1, idx) - z.amax(dim=1, keepdim=True) + torch.log(p.amax(dim=1, keepdim=True))).squeeze(1)
    return p, logp_t



def row_gradient(r: Tensor, target: Tensor, w: Tensor, n_inputs: int, target_value: Tensor | None = None) -> tuple:
    """The backward shared by the fused Functions whose gradient is ``w_n (r_n - q_n)`` (the note above):
    ``r * w`` per row with ``target_value`` (default ``-w``) added on the target column — one read of ``r``,
    one write of the gradient, an O(N) fix-up — and no gradient for the other ``n_inputs - 1`` inputs."""
    grad = r * w.unsqueeze(1)
    return (target_fixup(grad, target, -w if target_value is None else target_value),) + (None,) * (n_inputs - 1)


# --------------------------------------------------------------------------------------------
# dispatch: the one place that chooses an implementation
# --------------------------------------------------------------------------------------------


def per_sample(m: "Method", logits: Tensor, target: Tensor, weight, ignore_index: int, params: dict) -> Tensor:
    """Per-sample losses (the target's shape; ignored samples 0) of method ``m`` with checked ``params``:
    the native composition for small inputs (or where the method has no fused form, or ``m.native_only``
    says so for these parameters), else the fused Function on rows. A target of class probabilities takes
    :func:`probability_per_sample`."""
    if is_probability_target(target):
        return probability_per_sample(m, logits, target, weight, params)
    if m.native is not None and (m.fused is None or m.native_only(params) or use_native(logits)):
        z, t, w, cdim = prep(logits, target, weight, ignore_index)
        return m.native(z, t, w, ignore_index, "none", cdim, **params)
    r = rows(logits, target, ignore_index, weight)
    return r.out(m.fused(r, **params))


def reduced(m: "Method", logits: Tensor, target: Tensor, weight, ignore_index: int, reduction: str,
            params: dict) -> Tensor:
    """``reduction`` of the per-sample losses, as ``nn.CrossEntropyLoss``: 'mean' divides by the summed weights
    of non-ignored samples (0/0 -> nan, as PyTorch). For small inputs, one native composition ending in
    ``F.cross_entropy``'s fused reduction (the same value)."""
    if m.native is not None and reduction != "none" and not is_probability_target(target) and (m.fused is None or use_native(logits)):
        z, t, w, cdim = prep(logits, target, weight, ignore_index)
        return m.native(z, t, w, ignore_index, reduction, cdim, **params)
    out = m.fn(logits, target, weight=weight, ignore_index=ignore_index, **params)  # checks the parameters
    return reduce_losses(out, target, weight, ignore_index, reduction)


def reduce_losses(out: Tensor, target: Tensor, weight, ignore_index: int, reduction: str) -> Tensor:
    """Per-sample losses ``out`` (the target's shape) reduced as ``nn.CrossEntropyLoss`` reduces them. With class
    probabilities 'mean' divides by the number of samples (N d1 ... dk), not by a weight sum, as PyTorch does."""
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    if is_probability_target(target):
        return out.sum() / out.numel()
    valid = target != ignore_index
    if weight is None:
        return out.sum() / valid.sum()
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return out.sum() / (weight.to(out.dtype)[safe] * valid).sum()


# --------------------------------------------------------------------------------------------
# class-probability targets (mixup, cutmix, distillation): a floating-point target of the logits' shape
# --------------------------------------------------------------------------------------------


def is_probability_target(target) -> bool:
    """A floating-point target holds class probabilities, an integer one class indices (``nn.CrossEntropyLoss``)."""
    return isinstance(target, Tensor) and target.is_floating_point()


def class_rows(x: Tensor) -> Tensor:
    """``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)`` as rows ``(M, C)`` (class dimension last)."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    return x if x.dim() == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


def probability_per_sample(m: "Method", logits: Tensor, target: Tensor, weight, params: dict) -> Tensor:
    """Per-sample losses of method ``m`` for a target ``q`` of class probabilities (the logits' shape), read as
    ``F.cross_entropy`` reads one: ``label_smoothing`` mixes q with the uniform distribution
    (``(1 - eps) q + eps / C``), ``weight`` multiplies each class's term (``m.probabilities`` applies it), and
    ``ignore_index`` does not apply. Returns the logits' shape without the class dimension. A method that
    defines no loss for a distribution (``m.probabilities`` None) raises a ValueError naming its reason."""
    if m.probabilities is None:
        raise ValueError(f"target must be an integer tensor of class indices for loss {m.name!r} "
                         f"({m.no_probabilities}), got dtype {target.dtype}")
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() == 0:
        check_shapes(logits, target.long())  # the index path's messages for bad logits
    if target.shape != logits.shape:
        want = () if logits.dim() == 1 else (logits.shape[0], *logits.shape[2:])
        raise ValueError(f"target must be an integer tensor of class indices of shape {want} or a floating-point "
                         f"tensor of class probabilities of the logits' shape {tuple(logits.shape)}, got "
                         f"{target.dtype} of shape {tuple(target.shape)}")
    check_weight(weight, logits)
    z = class_rows(logits)
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    q = class_rows(target).to(z.dtype)
    params = dict(params)
    eps = params.pop("label_smoothing", 0.0)
    if eps:
        q = q * (1.0 - eps) + eps / z.shape[1]
    out = m.probabilities(z, q, None if weight is None else weight.to(z.dtype), **params)
    return out.reshape(() if logits.dim() == 1 else (logits.shape[0], *logits.shape[2:]))


def weighted_probabilities(q: Tensor, weight: Tensor | None) -> Tensor:
    """``w_c q_c`` per row: each class's multiplier in a probability target's loss (PyTorch's weighting)."""
    return q if weight is None else q * weight


def symmetric_logits(p: Tensor, num_classes: int) -> Tensor:
    """Logits ``(len(p), C)`` with target class 0 at probability ``p`` and equal rivals (float64): where the
    target-gradient profiles g(p) are evaluated."""
    p = p.double().clamp(1e-12, 1 - 1e-12)
    z = torch.zeros(p.shape[0], num_classes, dtype=torch.float64)
    z[:, 0] = torch.log(p * (num_classes - 1) / (1 - p))
    return z


# --------------------------------------------------------------------------------------------
# schedules of a method's parameter during training
# --------------------------------------------------------------------------------------------

SCHEDULE_SHAPES = ("linear", "log")


@dataclass(frozen=True)
class Schedule:
    """A value moving from ``start`` to ``end`` over the first ``length`` units, then constant.

    ``shape='linear'`` interpolates linearly, ``'log'`` geometrically (linear in log-space; needs
    positive ends). ``value(t)`` for t in units (epochs, or fractions of training).
    """

    start: float
    end: float
    length: float
    shape: str = "linear"

    def __post_init__(self):
        if self.shape not in SCHEDULE_SHAPES:
            raise ValueError(f"shape must be one of {SCHEDULE_SHAPES}, got {self.shape!r}")
        if self.length < 0:
            raise ValueError(f"length (epochs) must be >= 0, got {self.length!r}")
        if self.shape == "log" and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"a 'log' schedule needs start > 0 and end > 0, got {self.start}, {self.end}")

    def value(self, t: float) -> float:
        if self.length == 0 or t >= self.length:
            return float(self.end)
        f = max(0.0, t / self.length)
        if self.shape == "log":
            return float(math.exp((1 - f) * math.log(self.start) + f * math.log(self.end)))
        return float((1 - f) * self.start + f * self.end)


# --------------------------------------------------------------------------------------------
# the registry's records: what each method declares about itself
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A method parameter: its default and allowed values. ``kind`` 'real' (an interval, bounds open or
    closed), 'int' (``>= lo``) or 'bool'. :meth:`check` returns the value or raises a ValueError naming it."""

    default: Any
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    kind: str = "real"

    def check(self, name: str, value):
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < self.lo:
                raise ValueError(f"{name} must be an integer >= {int(self.lo)}, got {value!r}")
            return value
        return check_range(name, value, self.lo, self.hi, self.lo_open, self.hi_open)


@dataclass(frozen=True)
class Warmup:
    """A warm-up of one method parameter (``Config.warmup == kind``): ``schedule(cfg, params)`` -> a function
    of training time t (epochs) returning ``{param: value}``."""

    kind: str
    param: str
    schedule: Callable


@dataclass(frozen=True)
class Method:
    """One method's registry entry: everything the rest of the code asks about it by name.

    - ``fn``: the pure per-sample loss (None for a method that is not a loss: Noisy Softmax is a head);
    - ``params``: name -> :class:`Param` (defaults and allowed values: validation reads these);
    - ``neutral``: the setting that equals plain CE (tested), empty if none;
    - ``native(z, t, weight, ignore_index, reduction, cdim, **params)``: the native composition;
      ``fused(rows, **params)``: the one-pass Function on :class:`Rows` (None: always native);
      ``native_only(params)``: settings the fused path does not cover;
    - ``probabilities(z, q, weight, **params)``: per-row losses ``(M,)`` for rows ``z (M, C)`` and a target
      distribution ``q (M, C)`` (already label-smoothed; ``weight`` (C,) or None), where the method defines one;
      else ``no_probabilities`` says why not (:func:`probability_per_sample` raises it);
    - ``profile(p, num_classes, params, **kw)``: the analytic target-gradient profile g(p) (float64), or None;
    - ``warmup``: its parameter's warm-up (:class:`Warmup`), or None; ``zero_loss``: the loss can be exactly 0
      per sample (what AS-Speed counts);
    - ``run``: the run settings (``Config`` fields) that make a training run use it; ``knob``: the default
      search range of chapter 06's protocol, ``{param: [low, high, scale]}`` (None: not compared there);
      :meth:`limits` reads a knob's definitional limits off ``params`` and ``neutral``;
    - ``label``, ``color``, ``paper``: how the book names and draws it, and its source.
    """

    name: str
    fn: Callable | None
    params: dict = field(default_factory=dict)
    neutral: dict = field(default_factory=dict)
    native: Callable | None = None
    fused: Callable | None = None
    native_only: Callable = lambda params: False
    probabilities: Callable | None = None
    no_probabilities: str = ""
    profile: Callable | None = None
    warmup: Warmup | None = None
    zero_loss: bool = False
    run: dict = field(default_factory=dict)
    knob: dict | None = None
    label: str = ""
    color: str = "0.5"
    paper: str = ""

    def defaults(self) -> dict:
        return {k: p.default for k, p in self.params.items()}

    def limits(self, knob: str) -> dict[float, str]:
        """The definitional limits of parameter ``knob``: value -> why, read off the declaration: the
        ``neutral`` setting ("is CE": there the method is plain cross-entropy) and the closed, finite ends of
        its declared domain ("ends its domain"). A search range may reach them; an optimum at one is the
        method's own limit, not a range cut short. Empty for a knob not declared in ``params`` (Noisy
        Softmax's ``noise_alpha`` is a ``Config`` field). E.g. SGT: {1.0: "α = 1 is CE; ends its domain"}."""
        p = self.params.get(knob)
        out: dict[float, list[str]] = {}
        if knob in self.neutral:
            out.setdefault(float(self.neutral[knob]), []).append("is CE")
        if p is not None and p.kind == "real":
            for v, is_open in ((p.lo, p.lo_open), (p.hi, p.hi_open)):
                if not is_open and math.isfinite(v):
                    out.setdefault(float(v), []).append("ends its domain")
        return {v: f"{knob} = {v:g} " + "; ".join(why) for v, why in sorted(out.items())}

    def check_params(self, params: dict) -> dict:
        """``params`` checked against the declaration (names, types, ranges); raises ValueError naming the
        first bad one and the allowed values. Returns the defaults updated by ``params`` (values as given)."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for loss {self.name!r}; "
                             f"allowed: {sorted(self.params) or 'none'}")
        for k, v in params.items():
            self.params[k].check(k, v)
        return {**self.defaults(), **params}
