"""Sparse alternatives to softmax, for comparison: sparse-softmax (top-k; Sun et al. 2021, arXiv 2112.12433),
the sparsemax loss (Martins & Astudillo 2016) and the 1.5-entmax loss (Peters, Niculae, Martins 2019).
Each has one (fused) implementation; none is compared in chapter 06.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .core import Method, Param, per_sample, target_fixup, weighted_probabilities

__all__ = ["sparse_softmax", "sparsemax", "entmax15", "top_k", "SPARSE_SOFTMAX", "SPARSEMAX", "ENTMAX15"]

#: Rows of at most this many classes take :func:`top_k`'s stable-sort form, wider rows its topk-and-repair form
#: (the same set; ``benchmarks/ties.py --crossover``: the sort is faster up to 16 classes, the repair from 24,
#: and a sort costs ~20x ``topk`` at C = 1000).
SORT_MAX_CLASSES = 20


def top_k(z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest logits of each row of ``z (M, C)`` and their class indices, ``(M, k)`` each, kept by
    the authors' rule: among equal logits the lower class index is kept (TensorFlow's ``tf.math.top_k``, which
    Sparse-softmax's authors call in bojone/SPACES ``compute_seq2seq_loss``). ``torch.topk`` returns the same
    values but leaves the order of ties unspecified (it keeps indices [8, 6, 7] of ``zeros(1, 10)`` on a CPU,
    and CUDA may keep others), so the kept *set*, and with it the gradient, differed on rows with a tie at the
    k-th place. Equality is IEEE equality (``-0.0 == 0.0``; NaN logits are not supported). Deterministic, no
    device synchronisation, works under ``torch.compile(fullgraph=True)``; ``1 <= k <= C``.

    The *set* is what the losses use; its order is by value (ties in index order in the sort form).
    Two forms, the same set: up to :data:`SORT_MAX_CLASSES` classes a stable descending sort; above, ``topk``
    (k + 1 of them) with a repair of the rows whose k-th and (k+1)-th values tie (:func:`_repair_ties`). The
    repair reads each such row once more; on a CPU outside ``torch.compile`` it runs on those rows only (the
    tie flags are host memory there: reading them synchronises nothing), elsewhere on every row."""
    C = z.shape[1]
    if C <= SORT_MAX_CLASSES:
        # a stable descending sort keeps equal values in index order; for a narrow row one sort costs about
        # what one topk does
        vals, idx = torch.sort(z, dim=1, descending=True, stable=True)
        return vals[:, :k], idx[:, :k]
    if k >= C:
        return z.topk(C, dim=1)  # every class is kept: the set has no tie to break
    vals, idx = z.topk(k + 1, dim=1)
    # topk's values are exact, so the set is wrong only where the k-th value ties with the (k+1)-th
    tie = vals[:, k] == vals[:, k - 1]
    vals, idx = vals[:, :k], idx[:, :k]
    if _tied_rows_only(z):
        tied = tie.nonzero().squeeze(1)
        if tied.numel() == 0:
            return vals, idx
        idx = idx.clone()
        idx[tied] = _repair_ties(z[tied], vals[tied], idx[tied], k)
        return vals, idx
    return vals, _repair_ties(z, vals, idx, k)  # rows without a tie come back unchanged


def _tied_rows_only(z: Tensor) -> bool:
    """Repair only the rows with a tie (selected with a host read): on a CPU outside torch.compile, where the read
    synchronises nothing. On a GPU it would, and under torch.compile it would break the graph."""
    return z.device.type == "cpu" and not torch.compiler.is_compiling()


def _repair_ties(z: Tensor, vals: Tensor, idx: Tensor, k: int) -> Tensor:
    """topk's indices with the slots that hold the k-th value v_k refilled by the lowest indices i where
    z_i == v_k: the largest keys of  -i (z_i == v_k) / -C - i (otherwise), all distinct, so this topk has no
    tie to break. Every logit above v_k is in topk's set and comes first in its sorted output."""
    C = z.shape[1]
    vk = vals[:, k - 1:]
    ar = torch.arange(C, device=z.device, dtype=torch.int32)
    first = torch.where(z == vk, -ar, -C - ar).topk(k, dim=1).indices
    m = (vals > vk).sum(dim=1, keepdim=True)
    j = torch.arange(k, device=z.device)
    return torch.where(j < m, idx, first.gather(1, (j - m).clamp(min=0)))


class _SparseSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, k: int, keep_target: bool) -> Tensor:
        vals, idx = top_k(z, k)  # the authors' tie rule; O(NC) reads, no (N, C) float write
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



def sparse_softmax(logits: Tensor, target: Tensor, k: int = 5, keep_target: bool = False, *,
                   weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Sparse-softmax (Sun et al., arXiv 2112.12433): softmax restricted to the k largest logits.

    ``L = logsumexp_{i in K} z_i - z_t`` with ``K = top-k(z)``, the authors' definition (their public
    code and the paper's formula): a target outside the top-k is not added to ``K``, so its loss is
    ``lse(top-k) - z_t`` and its gradient ``-1`` on the target and the top-k softmax elsewhere.
    ``keep_target=True`` uses ``K = top-k(z) U {t}`` instead (a variant: the target always competes;
    both agree on every row whose target is among the top-k). ``k >= C`` is CE.
    logits ``(N, C[, d...])`` -> target's shape.

    Ties: ``K`` is chosen by the authors' rule, lower class index first among equal logits (their
    ``tf.math.top_k``; :func:`top_k`). Where logits tie at the k-th place only the lower indices are kept, a
    target among them included: ``z = 0`` (10 classes), ``t = 0``, ``k = 3`` keeps {0, 1, 2} and the gradient
    is -2/3 at 0 and 1/3 at 1 and 2, on every device and dtype. The loss value does not depend on the rule.

    Class-probability targets ``q`` (the logits' shape): ``sum_c w_c q_c (logsumexp_{i in K_c} z_i - z_c)``, the
    expectation under ``q`` of the loss above (``K_c = K``, or ``K U {c}`` with ``keep_target``); without
    ``keep_target`` and class weights it is ``lse(top-k) - sum_c q_c z_c``, the authors' formula with its target
    term averaged over ``q``. A one-hot ``q`` is the index target; ``k >= C`` is PyTorch's class-probability CE.
    """
    k = SPARSE_SOFTMAX.params["k"].check("k", k)
    keep_target = SPARSE_SOFTMAX.params["keep_target"].check("keep_target", keep_target)
    return per_sample(SPARSE_SOFTMAX, logits, target, weight, ignore_index, {"k": k, "keep_target": keep_target})



def _sparse_softmax_probabilities(z, q, weight, k=5, keep_target=False):
    idx = top_k(z.detach(), min(k, z.shape[1]))[1]  # the set (no gradient through the choice)
    lse = torch.logsumexp(z.gather(1, idx), dim=1, keepdim=True)  # its gradient reaches the kept set only
    if keep_target:  # K_c = top-k U {c}: lse for a class outside the top-k adds its own term
        kept = torch.zeros_like(z, dtype=torch.bool).scatter_(1, idx, True)
        lse = torch.where(kept, lse, torch.logaddexp(lse, z))
    # (lse - z_c) per class, then weighted: no cancellation between W lse and sum w q z at large logits
    return (weighted_probabilities(q, weight) * (lse - z)).sum(dim=1)


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
        omega = _omega(p, kind)
        g = target_fixup(p, target, -torch.ones_like(w))  # p - e_t, in p's buffer
        loss = (omega + (g * z).sum(dim=1)) * w
        ctx.save_for_backward(g, w)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        g, w = ctx.saved_tensors
        return g * (gout * w).unsqueeze(1), None, None, None


class _EntmaxProbabilityLoss(_EntmaxLoss):
    """The Fenchel-Young loss for a target distribution ``q``: ``L = Omega(p) - Omega(q) + (p - q) . z``, gradient
    ``p - q``, times the row weight ``W = sum_c w_c q_c``. For a one-hot ``q`` it is :class:`_EntmaxLoss`."""

    @staticmethod
    def forward(ctx, z: Tensor, q: Tensor, w: Tensor, kind: str) -> Tensor:
        p = _sparsemax(z) if kind == "sparsemax" else _entmax15(z)
        omega = _omega(p, kind) - _omega(q, kind)
        g = p.sub_(q)  # p - q, in p's buffer
        loss = (omega + (g * z).sum(dim=1)) * w
        ctx.save_for_backward(g, w)
        return loss  # backward: _EntmaxLoss's, g (p - q) times the row weight


def _omega(p: Tensor, kind: str) -> Tensor:
    """The regulariser's value per row: Ω(p) = (1 − Σ p²)/2 (sparsemax) or (1 − Σ p^1.5)/0.75 (1.5-entmax)."""
    return (1 - (p * p).sum(dim=1)) / 2 if kind == "sparsemax" else (1 - (p * p.sqrt()).sum(dim=1)) / 0.75


def _projection_probabilities(kind):
    def probabilities(z, q, weight):
        w = q.sum(dim=1) if weight is None else (q * weight).sum(dim=1)
        return _EntmaxProbabilityLoss.apply(z, q.detach(), w.detach(), kind)
    return probabilities


def sparsemax(logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Sparsemax loss (Martins & Astudillo 2016). ``(N, C[, d...])`` -> target's shape.

    Equal to the ``entmax`` package's ``sparsemax_loss`` (tested), computed here so it compiles. The projection
    is unique, so ties among logits need no rule. For a target distribution ``q`` Martins & Astudillo (their
    eq. for label proportions) give ``-q . z + 1/2 sum_{j in S} (z_j^2 - tau^2) + 1/2 |q|^2``, which is the
    Fenchel-Young form ``Omega(p) - Omega(q) + (p - q) . z`` with ``Omega(p) = (1 - |p|^2) / 2`` (gradient
    ``p - q``); softgrad computes that, times the sample weight ``sum_c w_c q_c`` (``weight[t]`` for a one-hot
    ``q``, which gives the index target's loss). The target receives no gradient.
    """
    return per_sample(SPARSEMAX, logits, target, weight, ignore_index, {})


def entmax15(logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """1.5-entmax loss (Peters, Niculae, Martins 2019). ``(N, C[, d...])`` -> target's shape.

    Equal to the ``entmax`` package's ``entmax15_loss`` (tested), computed here so it compiles. The projection is
    unique, so ties among logits need no rule. For a target distribution ``q``, the Fenchel-Young loss (Peters,
    Niculae, Martins 2019, defined there for any ``q`` in the simplex) with ``Omega(p) = (1 - sum p^1.5) / 0.75``,
    times the sample weight ``sum_c w_c q_c`` as for :func:`sparsemax`. The target receives no gradient.
    """
    return per_sample(ENTMAX15, logits, target, weight, ignore_index, {})



SPARSE_SOFTMAX = Method(
    "sparse_softmax", sparse_softmax, params={"k": Param(5, 1, kind="int"), "keep_target": Param(False, kind="bool")},
    fused=lambda r, k=5, keep_target=False: _SparseSoftmax.apply(r.z, r.target, r.w, min(k, r.z.shape[1]), keep_target),
    probabilities=_sparse_softmax_probabilities, label="sparse-softmax (top-k)", color="tab:brown", paper="Sun et al. 2021, arXiv 2112.12433")
SPARSEMAX = Method("sparsemax", sparsemax, fused=lambda r: _EntmaxLoss.apply(r.z, r.target, r.w, "sparsemax"),
                   probabilities=_projection_probabilities("sparsemax"), label="sparsemax", color="tab:pink", paper="Martins & Astudillo 2016")
ENTMAX15 = Method("entmax15", entmax15, fused=lambda r: _EntmaxLoss.apply(r.z, r.target, r.w, "entmax15"),
                  probabilities=_projection_probabilities("entmax15"), label="1.5-entmax", color="tab:gray", paper="Peters, Niculae, Martins 2019")
