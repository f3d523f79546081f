"""The stacked engine: K runs of one method and task trained as one model with a leading member dimension.

Many small runs (chapter 06's pool: hundreds of MLPs and small CNNs that differ only in seed, learning rate and
the method's knob) cost per-op overhead, not arithmetic: one MNIST MLP step is ~43 ATen ops, each a kernel launch
on a GPU. Stacking K runs turns K small GEMMs into one batched GEMM (``torch.baddbmm``), K small 2-d convolutions
into one grouped convolution (``groups = K``) and K small 1-d convolutions into one im2col GEMM, so one step of
the stack is one launch per op for all K members, and one loss call covers K·B rows.

Shapes. Member k's parameters are slice k of stacked tensors; its own ``nn.Module`` (evaluation, metrics) holds
views of them. A ``Linear(d_in, d_out)`` is ``W (K, d_in, d_out)`` (stored transposed: the forward
``h' = baddbmm(b[:, None], h, W)`` and its weight gradient then need no transposed copy), ``b (K, d_out)``; a
``Conv2d(c, o, kh, kw)`` is ``W (K, o, c, kh, kw)``, ``b (K, o)``; a ``Conv1d(c, o, k)`` is ``W (K, k·c, o)``
with ``W[m, j·c + ci, oo]`` = member m's ``weight[oo, ci, j]``, ``b (K, o)``. Activations are ``(K, B, d)``
between linear layers, ``(B, K·c, H, W)`` between 2-d convolutions (``conv2d(h, W.reshape(K·o, c, kh, kw),
groups=K)``) and ``(K, B, L, c)`` (channel-last) between 1-d convolutions, where a convolution of stride s and
zero padding p is ``out[k, b, o, t] = Σ_{c,j} W[k,o,c,j]·x_pad[k,b,c,s·t+j] + bias[k,o]``: the columns
``(K, B·T, k·c)`` of the padded input (:class:`_Im2col1d`, one copy) times ``W (K, k·c, o)`` in one
``baddbmm``. (Measured on a 2-core CPU for MNIST-1D's CNN: the im2col GEMM beats a grouped ``conv1d`` and
``torch.func.vmap`` over ``functional_call``; ``benchmarks/stacked.py --steps`` measures all three.) The logits
``(K, B, C)`` are flattened to ``(K·B, C)`` for the loss, and member k's loss is the mean of its B rows, so the
summed loss has member k's gradient in slice k and nothing else.

What may differ between members (the rest is :func:`stack_key`): ``seed`` (init, data order, label noise,
train/validation re-split and Noisy-Softmax noise, each drawn as the single engine draws it, from a generator of
the member's own, outside the stacked step, so member k does not depend on K or on its slot), ``lr`` and
``weight_decay`` (per-member columns in the optimizer update), the method's knob (``Method.knob``: a per-row
column ``(K·B, 1)`` in the loss, :func:`softgrad.losses.core.is_value`) and ``noise_alpha``; under AdamW also
``momentum`` and ``nesterov``, which AdamW does not read. Members whose training split has another size (label
noise moves the stratified split by a sample or two) train in separate stacks.

Optimizers: SGD (momentum, nesterov, weight decay) and AdamW (``torch.optim.AdamW``'s defaults, as the single
engine: betas (0.9, 0.999), eps 1e-8, decoupled weight decay), each as torch.optim's CPU update, op for op in its
order, with per-member lr and weight-decay columns: the stack's update of member k is the single engine's update
to the bit, given the same gradient. Member k's AdamW state (``exp_avg``, ``exp_avg_sq``) is slice k of stacked
tensors; the step count is one number (all members of a stack take the same steps).

Equivalence: member k is the single-engine run of its config up to rounding (bmm is not mm: the summation order
of a batched GEMM differs), which training then amplifies; ``tests/test_stacked.py`` states the tolerance.
Evaluation, metrics, per-example test results, checkpoints and results are per member and identical in form to
:func:`softgrad.train.train`'s: evaluation runs each member's own ``nn.Module`` whose parameters are views of
the stacked tensors (:func:`softgrad.train.evaluate`, the same code as the single engine). The checkpoint of a
stack (parameters, the optimizer's state, generators, histories) is written atomically after each epoch and a
rerun of the same stack resumes from it (kill -9 safe); a checkpoint of another format starts the stack afresh.

Models: those whose ``features`` are Linear, Conv1d (groups 1, dilation 1, zero padding), Conv2d, ReLU,
MaxPool2d/AdaptiveAvgPool2d (after Conv2d) and reshapes (Flatten, Unflatten), with a Linear or Noisy-Softmax
head: ``Config``'s ``STACKED_MODELS`` (``mlp``, ``lenet5``, ``cnn1d``; not the MNIST-1D authors' MLP, whose
hidden layer is residual).

Not stacked (``Config.engine`` validation says so): AS-Speed (it changes the number of optimizer steps per run),
augmentation, ``compile``, models other than those above (batch norm, residual blocks), DDP.

Timing fields: ``epoch_time`` of a member is the stack's epoch time divided by K (its share), so
``train_time`` summed over a stacked pool is the pool's wall time.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses as L
from .calibration import reliability_bins
from .config import Config, config_id, effective_threads
from .data import Dataset, load_dataset, stratified_split
from .losses.core import per_sample as _per_sample
from .losses.noisy import NoisySoftmaxHead
from .models import build_model
from .store import atomic_torch_save
from .train import (GRAD_NORM_EVERY, dataset_options, TrainState, _cpu_name, _lr_factor, _param_schedule, _Run, evaluate,
                    final_examples, pick_device, world)

__all__ = ["VARYING", "ADAMW_IGNORES", "stack_key", "group", "train_stack", "MAX_STACK"]

#: Config fields that may differ between the members of one stack (plus the method's knob in ``loss_params``)
VARYING = ("seed", "lr", "weight_decay", "noise_alpha")
#: Config fields that AdamW does not read: members of an AdamW stack may differ in them too
ADAMW_IGNORES = ("momentum", "nesterov")
#: the default largest stack (``runs.run_grid(max_stack=...)``; members never depend on it)
MAX_STACK = 64


def _knobs(cfg: Config) -> tuple:
    return tuple((L.LOSSES[cfg.loss].knob or {}).keys())


def stack_key(cfg: Config) -> str:
    """What members of one stack share: every field but :data:`VARYING`, the loss's knob and, under AdamW,
    :data:`ADAMW_IGNORES` (whether the Noisy-Softmax head is on is shared; its ``noise_alpha`` is not)."""
    d = cfg.to_dict()
    for k in VARYING + (ADAMW_IGNORES if cfg.optimizer == "adamw" else ()):
        d.pop(k)
    d["noisy_head"] = cfg.noise_alpha > 0
    d["loss_params"] = {k: v for k, v in cfg.loss_params.items() if k not in _knobs(cfg)}
    return json.dumps(d, sort_keys=True)


def group(configs: list[Config], max_size: int = MAX_STACK, parts: int = 1) -> list[list[Config]]:
    """``configs`` grouped into stacks by :func:`stack_key` (first-seen order), each at most ``max_size``
    members and split into at least ``parts`` stacks where it has enough members (one per worker).

    A key's n members go into m stacks of near-equal size (contiguous, the larger first), m the fewest that keep
    each stack at most ``max_size``, rounded up to a multiple of ``parts``: 175 members in stacks of at most 64
    on 2 workers are 4 stacks of 44/44/44/43, not 64/64/47 (whose last stack would leave one worker idle)."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_stack must be a positive int, got {max_size!r}")
    by: dict[str, list[Config]] = {}
    for c in configs:
        by.setdefault(stack_key(c), []).append(c)
    out = []
    parts = max(1, parts)
    for members in by.values():
        n = len(members)
        m = min(n, math.ceil(max(parts, math.ceil(n / max_size)) / parts) * parts)
        q, r = divmod(n, m)
        i = 0
        for j in range(m):
            out.append(members[i:i + q + (j < r)])
            i += q + (j < r)
    return out


# ------------------------------------------------------------------ data


def _base_data(cfg: Config) -> Dataset:
    # the dataset's options as the single engine reads them (softgrad.train.dataset_options): one map, so a
    # member trains on the data its single-engine twin does (MNIST-1D's size and split, MNIST-10k's test share)
    return load_dataset(cfg.dataset, root=cfg.data_root or None, **dataset_options(cfg))


def _member_split(base: Dataset, cfg: Config) -> tuple[Tensor, Tensor, Tensor | None]:
    """(labels with the member's noise, train indices, validation indices) into ``base``'s training part: the
    same draws as :func:`softgrad.train.prepare_data` (noise, then the stratified split, both by ``seed``)."""
    y = base.with_label_noise(cfg.label_noise, seed=cfg.seed).y_train
    if cfg.val_fraction > 0:
        tr, va = stratified_split(y, cfg.val_fraction, cfg.seed)
        return y, tr, va
    return y, torch.arange(y.shape[0]), None


# ------------------------------------------------------------------ one member, as the single engine sees it


def _set_param(module: nn.Module, name: str, value: nn.Parameter) -> None:
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    setattr(module, leaf, value)


class _Member:
    """Member k of a stack with the attributes :meth:`softgrad.train._Run.metrics_row` reads: its own module
    (parameters are live views of the stacked tensors), loss, splits (built when evaluated), state."""

    def __init__(self, cfg, model, x, x_test, y_test, y, tr, va, amp, ts, track):
        self.cfg, self.model, self.amp, self.ts, self.track = cfg, model, amp, ts, track
        self._x, self._x_test, self._y_test, self._y, self._tr, self._va = x, x_test, y_test, y, tr, va
        self.loss_fn = L.make_loss(cfg.loss, **cfg.loss_params)
        self.schedule = _param_schedule(cfg)
        self.ds = type("MemberData", (), {"y_val": None if va is None else y[va], "y_val_clean": None})()

    @property
    def splits(self):  # one split's tensors at a time (K members' copies of the training set would not fit)
        yield "train", self._x[self._tr], self._y[self._tr]
        yield "test", self._x_test, self._y_test
        if self._va is not None:
            yield "val", self._x[self._va], self._y[self._va]

    def metrics_row(self, epoch: int, final: bool = False):
        return _Run.metrics_row(self, epoch, final)


# ------------------------------------------------------------------ the stacked layers


class _Im2col1d(torch.autograd.Function):
    """The columns of a zero-padded, channel-last 1-d input: a convolution as one batched GEMM.

    ``xp (K, B, Lp, c)`` -> ``(K, B·T, k·c)`` with ``T = (Lp - k) // stride + 1``: row ``b·T + t`` holds
    ``xp[:, b, stride·t + j, :]`` for ``j = 0 .. k-1`` (tap-major, channel-minor). In the channel-last layout a
    window is ``k·c`` consecutive numbers of the flattened ``Lp·c`` axis, so the columns are an overlapping
    strided view of it and the forward is one copy; the backward adds the k tap blocks back with k strided adds
    (autograd's ``unfold_backward`` is several times slower at these sizes)."""

    @staticmethod
    def forward(ctx, xp: Tensor, k: int, stride: int) -> Tensor:
        K, B, Lp, c = xp.shape
        T = (Lp - k) // stride + 1
        ctx.meta = (xp.shape, k, stride, T)
        return xp.reshape(K, B, Lp * c).unfold(2, k * c, stride * c).reshape(K, B * T, k * c)

    @staticmethod
    def backward(ctx, g: Tensor):
        (K, B, Lp, c), k, stride, T = ctx.meta
        g = g.reshape(K, B, T, k, c)
        gx = g.new_empty(K, B, Lp, c)
        first = min(k, stride)  # taps j < stride land on positions stride·t + j: the first stride·T, each once
        gx[:, :, :stride * T].view(K, B, T, stride, c)[:, :, :, :first].copy_(g[:, :, :, :first])
        if first < stride:
            gx[:, :, :stride * T].view(K, B, T, stride, c)[:, :, :, first:].zero_()
        gx[:, :, stride * T:].zero_()
        for j in range(first, k):
            gx[:, :, j:j + stride * (T - 1) + 1:stride] += g[:, :, :, j]
        return gx, None, None


def _plan(features: nn.Module, input_shape: tuple) -> list[tuple]:
    """The stacked forward's steps, one per layer of ``features``, from one pass of a probe batch through the
    template (no random draws): ``("linear", prefix)``, ``("conv1d", prefix, k, stride, pad)``, ``("conv2d",
    prefix, module)``, ``("relu",)``, ``("pool2d", module)``, ``("reshape", sample_shape)`` (``nn.Flatten``,
    ``nn.Unflatten`` or any parameter-free layer whose output is its input reshaped)."""
    n = math.prod(input_shape)
    h = torch.arange(2 * n, dtype=torch.float32).reshape(2, *input_shape) / n - 0.5
    steps = []
    with torch.no_grad():
        for name, mod in features.named_children():
            pre = f"features.{name}."
            out = mod(h.clone())  # a clone: an in-place ReLU must not change h
            if isinstance(mod, nn.Linear):
                steps.append(("linear", pre))
            elif isinstance(mod, nn.Conv1d):
                if mod.groups != 1 or mod.dilation != (1,) or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                    raise ValueError(f"engine: 'stacked' stacks Conv1d with groups 1, dilation 1 and numeric zero "
                                     f"padding, got {mod}; set engine: single")
                steps.append(("conv1d", pre, mod.kernel_size[0], mod.stride[0], mod.padding[0]))
            elif isinstance(mod, nn.Conv2d):
                steps.append(("conv2d", pre, mod))
            elif isinstance(mod, nn.ReLU):
                steps.append(("relu",))
            elif isinstance(mod, (nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
                steps.append(("pool2d", mod))
            elif (not any(True for _ in mod.parameters()) and not any(True for _ in mod.buffers())
                  and out.shape[0] == 2 and out.numel() == h.numel() and torch.equal(out, h.reshape(out.shape))):
                steps.append(("reshape", tuple(out.shape[1:])))
            else:
                raise ValueError(f"engine: 'stacked' cannot stack layer {type(mod).__name__}; set engine: single")
            h = out
    return steps


def _layouts(template: nn.Module, plan: list[tuple]) -> dict[str, str]:
    """How each stacked parameter lays out member k's module parameter (see :meth:`_Stack.to_stack`):
    'linear' (``W (o, i)`` stored as ``(i, o)``, so that ``baddbmm(b, h, W)`` and its weight gradient need no
    transposed copy), 'conv1d' (``W (o, c, k)`` stored as ``(k·c, o)``, the im2col GEMM's right operand) or
    'same'."""
    out = {n: "same" for n, _ in template.named_parameters()}
    for step in plan:
        if step[0] in ("linear", "conv1d"):
            out[step[1] + "weight"] = step[0]
    out["head.weight"] = "linear"
    return out


def _to_stack(t: Tensor, layout: str) -> Tensor:
    if layout == "linear":
        return t.t()
    if layout == "conv1d":  # Wc[j·c + ci, o] = W[o, ci, j]
        return t.permute(2, 1, 0).reshape(-1, t.shape[0])
    return t


def _to_module(t: Tensor, layout: str, shape: torch.Size) -> Tensor:
    """Member k's module parameter (``shape``) as a view of slice k of a stacked parameter."""
    if layout == "linear":
        return t.t()
    if layout == "conv1d":
        o, c, k = shape
        return t.view(k, c, o).permute(2, 1, 0)
    return t


def _to_kb(h: Tensor, layout: str, K: int, B: int) -> Tensor:
    """Activations in any layout as ``(K, B, *sample_shape)``: 'kb' as they are, 'g2d' ``(B, K·c, H, W)``
    (grouped convolutions), 'cl1d' ``(K, B, L, c)`` (channel-last 1-d)."""
    if layout == "g2d":
        return h.reshape(B, K, -1, *h.shape[2:]).transpose(0, 1)
    if layout == "cl1d":
        return h.transpose(2, 3)
    return h


#: torch.optim.AdamW's defaults, which the single engine uses (softgrad.train): betas, eps
ADAMW_BETAS, ADAMW_EPS = (0.9, 0.999), 1e-8
#: the checkpoint format of a stack (2: Linear and Conv1d weights stored transposed, optimizer state by kind)
CKPT_FORMAT = 2


# ------------------------------------------------------------------ the stacked model and step


class _Stack:
    """K members with training sets of one size: stacked parameters, optimizer state, per-member state."""

    def __init__(self, cfgs: list[Config], base: Dataset, splits: list, device: torch.device, progress: bool):
        c0 = cfgs[0]
        self.cfgs, self.K, self.device, self.progress = cfgs, len(cfgs), device, progress
        self.x, self.N = base.x_train, splits[0][1].shape[0]
        self.amp = c0.amp == "bf16" or (c0.amp == "auto" and device.type == "cuda")
        models, self.gens = [], []
        for c in cfgs:  # each member built as the single engine builds it: global seed, then the model
            torch.manual_seed(c.seed)
            models.append(build_model(c, base.input_shape, base.num_classes))
            g = torch.Generator(device=device)  # Noisy-Softmax noise: the stream the single engine would use
            if device.type == "cpu":
                g.set_state(torch.get_rng_state())
            else:
                g.manual_seed(c.seed)
            self.gens.append(g)
        self.template = models[0]
        self.plan = _plan(self.template.features, base.input_shape)
        self.layout = _layouts(self.template, self.plan)
        self.names = [n for n, _ in self.template.named_parameters()]
        self.P = {n: torch.stack([_to_stack(dict(m.named_parameters())[n].detach(), self.layout[n]) for m in models])
                  .to(device).requires_grad_() for n in self.names}
        self.plist = list(self.P.values())
        self.members = []
        for k, (c, m) in enumerate(zip(cfgs, models)):
            m.to(device)
            for n in self.names:
                view = _to_module(self.P[n].detach()[k], self.layout[n], dict(m.named_parameters())[n].shape)
                _set_param(m, n, nn.Parameter(view, requires_grad=False))
            y, tr, va = splits[k]
            track = None
            if c.track_samples:
                g = torch.Generator().manual_seed(c.seed)
                track = torch.randperm(tr.shape[0], generator=g)[:c.track_samples].sort().values.to(device)
            ts = TrainState(history=[], per_sample={"index": track.tolist() if track is not None else [], "pt": []},
                            state={"k": 1, "remaining": 0}, epoch=0, step_loss={"step": [], "loss": []},
                            reliability=None, init=[p.detach().clone() for p in m.parameters()])
            mb = _Member(c, m, self.x, base.x_test, base.y_test, y.to(device), tr.to(device),
                         None if va is None else va.to(device), self.amp, ts, track)
            if c.label_noise > 0 and va is not None:  # the true labels: temperature scaling fits on them
                mb.ds.y_val_clean = base.y_train[va].to(device)
            self.members.append(mb)
        self.y = torch.stack([mb._y for mb in self.members])  # (K, N_base) labels of each member (its noise)
        self.tr = torch.stack([mb._tr for mb in self.members])  # (K, N) training indices into base
        self.B = c0.batch_size
        self.steps_per_epoch = -(-self.N // self.B)
        self.lr = [c.lr for c in cfgs]
        self.wds = [c.weight_decay for c in cfgs]
        self.adamw = c0.optimizer == "adamw"
        self.bufs: list[Tensor] | None = None  # SGD's momentum buffers
        # AdamW's state: exp_avg, exp_avg_sq (stacked like the parameters) and the step count (every member of a
        # stack takes the same steps: one count)
        self.adam = {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.plist],
                     "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.plist],
                     "step": 0} if self.adamw else None
        wd = torch.tensor(self.wds, dtype=torch.float32, device=device)
        self.wd = None if not any(self.wds) else [wd.view(-1, *[1] * (p.dim() - 1)) for p in self.plist]
        self.dims = sorted({p.dim() for p in self.plist})
        self.noisy = isinstance(self.template.head, NoisySoftmaxHead)
        if self.noisy:
            self.alpha = torch.tensor([c.noise_alpha for c in cfgs], dtype=torch.float32, device=device)[:, None]
        # the loss: parameters equal across members stay numbers; a knob that differs is a per-row column
        self.method = L.LOSSES[c0.loss]
        self.knob_vals = {k: [m.loss_fn.params[k] for m in self.members] for k in _knobs(c0)}
        self.warm = c0.warmup != "none"
        C = base.num_classes
        impl = c0.loss_impl
        if impl == "auto":  # what the single engine's batch of B rows would take, not K·B rows
            impl = "native" if self.B * C < L.FUSED_MIN_NUMEL else "fused"
        self.impl = impl
        self._check_forward()

    @torch.no_grad()
    def _check_forward(self) -> None:
        """The stacked forward reproduces every member's own module on two training samples (a model whose layers
        :func:`_plan` misreads fails here, before training, not as silently different runs)."""
        idx = self.tr[:, :2]
        got = self._forward(idx, self.y.gather(1, idx), train=False).float()
        want = torch.stack([m.model(self.x[idx[k]]) for k, m in enumerate(self.members)]).float()
        if not torch.allclose(got, want, rtol=1e-3, atol=1e-4):
            raise ValueError(f"engine: 'stacked' does not reproduce model {self.cfgs[0].model!r} (largest logit "
                             f"difference {float((got - want).abs().max()):.3g}); set engine: single")

    # -------- the forward pass

    def _forward(self, idx: Tensor, y: Tensor, train: bool) -> Tensor:
        """Logits (K, B, C) of every member on its own batch ``idx`` (K, B) of indices into the data.

        Layouts of the activations: ``(K, B, d)`` into a Linear, ``h' = baddbmm(b, h, W)`` with ``W (K, d, d')``;
        ``(B, K·c, H, W)`` through Conv2d layers, ``conv2d(h, W.reshape(K·o, c, kh, kw), groups=K)``;
        ``(K, B, L, c)`` (channel-last) through Conv1d layers, as im2col and one batched GEMM:
        ``out[k, b, o, t] = Σ_{c,j} W[k, o, c, j] · x_pad[k, b, c, stride·t + j] + bias[k, o]``, i.e.
        ``baddbmm(bias, cols (K, B·T, k·c), Wc (K, k·c, o))`` with ``cols`` from :class:`_Im2col1d` and
        ``Wc[k, j·c + ci, o] = W[k, o, ci, j]`` (the stacked parameter itself)."""
        K, B = idx.shape
        P = self.P
        if self.plan[0][0] == "conv2d":  # (B, K*c, H, W): member k's channels are group k of every convolution
            h = self.x[idx.t()]
            h, lay = h.reshape(B, K * h.shape[2], *h.shape[3:]), "g2d"
        else:
            h, lay = self.x[idx], "kb"
        prev = None
        for step in self.plan:
            kind = step[0]
            if kind == "relu":  # in place on a layer's output (their backward does not read it), never on data
                h = torch.relu_(h) if prev in ("linear", "conv1d", "conv2d") else torch.relu(h)
            elif kind == "linear":
                h = _to_kb(h, lay, K, B)
                b = P.get(step[1] + "bias")
                W = P[step[1] + "weight"]
                h, lay = torch.bmm(h, W) if b is None else torch.baddbmm(b.unsqueeze(1), h, W), "kb"
            elif kind == "conv1d":
                _, pre, k, stride, pad = step
                h = _to_kb(h, lay, K, B).transpose(2, 3)  # (K, B, L, c)
                if pad:
                    h = F.pad(h, (0, 0, pad, pad))
                T = (h.shape[2] - k) // stride + 1
                cols = _Im2col1d.apply(h, k, stride)
                W, b = P[pre + "weight"], P.get(pre + "bias")
                h = torch.bmm(cols, W) if b is None else torch.baddbmm(b.unsqueeze(1), cols, W)
                h, lay = h.view(K, B, T, -1), "cl1d"
            elif kind == "conv2d":
                _, pre, mod = step
                if lay != "g2d":
                    h = _to_kb(h, lay, K, B)
                    h = h.transpose(0, 1).reshape(B, -1, *h.shape[3:])
                W, b = P[pre + "weight"], P.get(pre + "bias")
                h, lay = F.conv2d(h, W.reshape(-1, *W.shape[2:]), None if b is None else b.reshape(-1), mod.stride,
                                  mod.padding, mod.dilation, K * mod.groups), "g2d"
            elif kind == "pool2d":
                h = step[1](h)  # per channel: groups need nothing
            else:  # reshape
                h, lay = _to_kb(h, lay, K, B).reshape(K, B, *step[1]), "kb"
            prev = kind
        h = _to_kb(h, lay, K, B)
        W = P["head.weight"]  # (K, d, C)
        b = P.get("head.bias")
        logits = torch.bmm(h, W) if b is None else torch.baddbmm(b.unsqueeze(1), h, W)
        if train and self.noisy:
            logits = self._noisy(h, W, logits, y)
        return logits

    def _noisy(self, f: Tensor, W: Tensor, logits: Tensor, y: Tensor) -> Tensor:
        """:func:`softgrad.losses.noisy_logits` per member (its alpha, its generator), the same formula."""
        head, (K, B) = self.template.head, y.shape
        idx = y.unsqueeze(2)
        f_y = logits.gather(2, idx).squeeze(2).float()
        if head.noise == "free":
            scale = torch.ones_like(f_y)
        else:
            amp = W.float().norm(dim=1).gather(1, y) * f.float().norm(dim=2)
            scale = amp if head.noise == "amplitude" else (amp - f_y).clamp(min=0.0)
        if head.detach_scale:
            scale = scale.detach()
        xi = torch.stack([torch.randn((B,), generator=g, device=self.device, dtype=torch.float32)
                          for g in self.gens]) * head.noise_std
        n = {"positive": xi.abs(), "gaussian": xi, "negative": -xi.abs()}[head.sign]
        delta = (self.alpha * scale * n).to(logits.dtype)
        return logits.scatter_add(2, idx, -delta.unsqueeze(2))

    # -------- the optimizers: torch.optim's updates, op for op, with per-member columns

    def _columns(self, rows: list[list[float]]) -> dict[int, Tensor]:
        """Per-step, per-member numbers (S, K) as one tensor on the device (one copy per epoch), viewed for
        each parameter rank: ``cols[d][i]`` is step i's column, broadcastable against a ``d``-dim parameter."""
        t = torch.tensor(rows, dtype=torch.float32, device=self.device)
        return {d: t.view(t.shape[0], self.K, *[1] * (d - 1)) for d in self.dims}

    def _step_cols(self, cols: dict[int, Tensor], i: int) -> list[Tensor]:
        at = {d: c[i] for d, c in cols.items()}
        return [at[p.dim()] for p in self.plist]

    def _sgd(self, neg_lr: list[Tensor]) -> None:
        """torch.optim.SGD's update (weight decay, momentum, dampening 0, nesterov), its ops in its order, with
        per-member lr and weight decay; in place in the gradients, which are the stack's own."""
        c = self.cfgs[0]
        params, grads = self.plist, [p.grad for p in self.plist]
        if self.wd is not None:
            torch._foreach_addcmul_(grads, params, self.wd)  # d = g + wd·p
        d = grads
        if c.momentum:
            if self.bufs is None:
                self.bufs = [g.detach().clone() for g in grads]
            else:
                torch._foreach_mul_(self.bufs, c.momentum)
                torch._foreach_add_(self.bufs, grads)
            if c.nesterov:
                torch._foreach_add_(grads, self.bufs, alpha=c.momentum)
            else:
                d = self.bufs
        torch._foreach_addcmul_(params, d, neg_lr)

    def _adamw(self, decay: list[Tensor] | None, neg_step: list[Tensor], bc2_sqrt: float) -> None:
        """torch.optim.AdamW's update (the single-tensor path, amsgrad off), its ops in its order: ``p ← p·(1 −
        lr·wd)``; ``m ← lerp(m, g, 1 − β1)``; ``v ← v·β2 + (1 − β2)·g²``; ``p ← p + (−lr/(1 − β1^t))·m /
        (√v / √(1 − β2^t) + eps)``, with per-member columns ``decay`` and ``neg_step``."""
        b1, b2 = ADAMW_BETAS
        params, grads = self.plist, [p.grad for p in self.plist]
        m, v = self.adam["exp_avg"], self.adam["exp_avg_sq"]
        if decay is not None:
            torch._foreach_mul_(params, decay)
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, ADAMW_EPS)
        upd = torch._foreach_mul(m, neg_step)  # addcdiv_(m, denom, value=s) is p + (s·m)/denom
        torch._foreach_div_(upd, denom)
        torch._foreach_add_(params, upd)

    def _schedule(self, factors: list[float]):
        """The epoch's optimizer numbers, per step and member, as the single engine computes them (Python floats,
        rounded to float32 where torch's kernels round them): a function ``i -> update()``."""
        lrs = [[lr * f for lr in self.lr] for f in factors]  # the single engine's param_groups[0]['lr']
        if not self.adamw:
            cols = self._columns([[-lr for lr in row] for row in lrs])
            return lambda i: self._sgd(self._step_cols(cols, i))
        b1, b2 = ADAMW_BETAS
        t0 = self.adam["step"]
        decay = self._columns([[1 - lr * wd for lr, wd in zip(row, self.wds)] for row in lrs]) if self.wd else None
        neg_step = self._columns([[-(lr / (1 - b1 ** float(t0 + i + 1))) for lr in row] for i, row in enumerate(lrs)])

        def update(i):
            self.adam["step"] = t0 + i + 1
            self._adamw(None if decay is None else self._step_cols(decay, i), self._step_cols(neg_step, i),
                        (1 - b2 ** float(t0 + i + 1)) ** 0.5)
        return update

    # -------- one epoch

    def _loss_params(self, t: float, rows: int) -> dict:
        """The loss parameters for a step at time t (epochs): shared ones as numbers; the knob (after its
        warm-up, if any) a number where every member has the same value, else a per-row column (K·rows, 1)."""
        params = dict(self.members[0].loss_fn.params)
        for k, fixed in self.knob_vals.items():
            vals = [{**m.loss_fn.params, **m.schedule(t)}[k] for m in self.members] if self.warm else fixed
            if len(set(vals)) > 1:
                col = torch.tensor(vals, dtype=torch.float32, device=self.device)
                params[k] = col.repeat_interleave(rows)[:, None]
            else:
                params[k] = vals[0]
        return params

    @torch.no_grad()
    def _order(self, epoch: int) -> Tensor:
        """(K, N) indices into the data: member k's training set in :class:`~softgrad.data.Batcher`'s order."""
        rows = []
        for k, c in enumerate(self.cfgs):
            g = torch.Generator(device=self.device).manual_seed(c.seed * 100_003 + epoch)
            rows.append(self.tr[k][torch.randperm(self.N, generator=g, device=self.device)])
        return torch.stack(rows)

    def train_epoch(self, epoch: int) -> list[dict]:
        c0, dev, K, B, S = self.cfgs[0], self.device, self.K, self.B, self.steps_per_epoch
        t0 = time.perf_counter()
        order = self._order(epoch)
        lr_const = c0.lr_schedule == "constant" and not c0.lr_warmup_epochs
        factors = [1.0 if lr_const else _lr_factor(c0, epoch + i / S) for i in range(S)]
        # every step's optimizer numbers in one host-to-device copy (no copy, no sync inside the step)
        update = self._schedule(factors)
        params_const = None if self.warm else self._loss_params(0.0, B)
        run_loss = torch.zeros(K, device=dev)
        gnorm_sum = torch.zeros(K, device=dev)
        gnorm_n = 0
        step_log = []
        with L.implementation(self.impl):
            for i in range(S):
                t = epoch + i / S
                idx = order[:, i * B:(i + 1) * B]
                rows = idx.shape[1]
                yb = self.y.gather(1, idx)
                with torch.autocast(dev.type, torch.bfloat16, enabled=self.amp):
                    logits = self._forward(idx, yb, train=True)
                params = params_const if (params_const is not None and rows == B) else self._loss_params(t, rows)
                per = _per_sample(self.method, logits.float().reshape(K * rows, -1), yb.reshape(-1), None, -100, params)
                member_loss = per.view(K, rows).mean(1)  # member k's batch mean: only slice k gets its gradient
                member_loss.sum().backward()
                run_loss.add_(member_loss.detach(), alpha=rows)
                if c0.log_every and (epoch * S + i) % c0.log_every == 0:  # a host sync: opt-in, as single
                    step_log.append((epoch * S + i, member_loss.detach().tolist()))
                with torch.no_grad():
                    if i % GRAD_NORM_EVERY == 0:
                        norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in self.plist])
                        gnorm_sum += torch.linalg.vector_norm(norms, dim=0)
                        gnorm_n += 1
                    update(i)
                for p in self.plist:
                    p.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / K  # each member's share of the stack's time
        t_last = epoch + (S - 1) / S
        for m in self.members:  # the parameter value the single engine's loss holds at the epoch's end
            m.loss_fn.params.update(m.schedule(t_last))
        for step, vals in step_log:
            for m, v in zip(self.members, vals):
                m.ts.step_loss["step"].append(step)
                m.ts.step_loss["loss"].append(v)
        rl, gn = (run_loss / self.N).tolist(), (gnorm_sum / max(1, gnorm_n)).tolist()
        lr_now = [lr * factors[-1] for lr in self.lr]  # as the single engine's param_groups[0]['lr']
        return [{"train_loss_running": rl[k], "lr_now": lr_now[k], "opt_steps": S, "accum_k": 1,
                 "grad_norm": gn[k], "epoch_time": dt, "samples_per_s": self.N / dt} for k in range(K)]

    # -------- checkpoints

    def state(self) -> dict:
        return {"format": CKPT_FORMAT, "P": {n: p.detach() for n, p in self.P.items()}, "bufs": self.bufs,
                "adam": self.adam,
                "gens": [g.get_state() for g in self.gens], "epoch": self.members[0].ts.epoch,
                "members": [{"history": m.ts.history, "per_sample": m.ts.per_sample, "step_loss": m.ts.step_loss,
                             "reliability": m.ts.reliability, "examples": m.ts.examples,
                             "init": [t.cpu() for t in m.ts.init],
                             "loss_params": dict(m.loss_fn.params)} for m in self.members]}

    @torch.no_grad()
    def load(self, ck: dict) -> None:
        for n, p in self.P.items():
            p.copy_(ck["P"][n])
        self.bufs = None if ck["bufs"] is None else [b.to(self.device) for b in ck["bufs"]]
        if self.adamw:
            a = ck["adam"]
            self.adam = {"exp_avg": [t.to(self.device) for t in a["exp_avg"]],
                         "exp_avg_sq": [t.to(self.device) for t in a["exp_avg_sq"]], "step": a["step"]}
        for g, s in zip(self.gens, ck["gens"]):
            g.set_state(s)
        for m, s in zip(self.members, ck["members"]):
            m.ts = TrainState(s["history"], s["per_sample"], {"k": 1, "remaining": 0}, ck["epoch"], s["step_loss"],
                              s["reliability"], [t.to(self.device) for t in s["init"]], s.get("examples"))
            m.loss_fn.params.update(s["loss_params"])


def _stack_id(cfgs: list[Config]) -> str:
    return hashlib.sha256(",".join(config_id(c) for c in cfgs).encode()).hexdigest()[:16]


def _train_part(cfgs, base, splits, device, ckpt_dir, progress, stop_after_epoch) -> list[dict]:
    st = _Stack(cfgs, base, splits, device, progress)
    c0 = cfgs[0]
    ckpt = Path(ckpt_dir) / f"stack-{_stack_id(cfgs)}.ckpt" if ckpt_dir else None
    if ckpt and ckpt.exists():
        ck = torch.load(ckpt, map_location=device, weights_only=False)
        if ck.get("format") == CKPT_FORMAT:  # another layout (an older softgrad): the stack starts afresh
            st.load(ck)
    if st.members[0].ts.epoch == 0:
        for m in st.members:
            m.loss_fn.params.update(m.schedule(0.0))
            m.ts.history.append(m.metrics_row(0)[0])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=c0.epochs, initial=st.members[0].ts.epoch, leave=False,
                   desc=f"{c0.loss} stack of {st.K} (seeds {cfgs[0].seed}..{cfgs[-1].seed})")
    for epoch in range(st.members[0].ts.epoch, c0.epochs):
        stats = st.train_epoch(epoch)
        last = epoch + 1 == c0.epochs
        for m, s in zip(st.members, stats):
            if last or (epoch + 1) % c0.eval_every == 0:
                row, te = m.metrics_row(epoch + 1, final=last)
            else:
                row, te = {"epoch": epoch + 1}, None
            row.update(s)
            m.ts.history.append(row)
            if last:
                m.ts.reliability = reliability_bins(te["_conf"], te["_correct"])
                m.ts.examples = final_examples(te, row.get("ts_temperature"))
            m.ts.epoch = epoch + 1
        if bar is not None:
            bar.update(1)
        if ckpt:
            atomic_torch_save(st.state(), ckpt)
        if stop_after_epoch is not None and epoch + 1 == stop_after_epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1} (test hook)")
    if bar is not None:
        bar.close()
    name = torch.cuda.get_device_name() if device.type == "cuda" else _cpu_name()
    out = []
    for m in st.members:
        if m.ts.examples is None:  # resumed from a finished checkpoint written before per-example results were kept
            te = evaluate(m.model, m._x_test, m._y_test, m.loss_fn, amp=m.amp)
            m.ts.examples = final_examples(te, m.ts.history[-1].get("ts_temperature"))
        final = dict(m.ts.history[-1])
        final["train_time"] = sum(h.get("epoch_time", 0.0) for h in m.ts.history)
        final["total_opt_steps"] = sum(h.get("opt_steps", 0) for h in m.ts.history)
        out.append({"history": m.ts.history, "final": final, "per_sample": m.ts.per_sample,
                    "reliability": m.ts.reliability, "step_loss": m.ts.step_loss, "examples": m.ts.examples,
                    "device": str(device),
                    "device_name": name, "stack_size": st.K, "_ckpt": ckpt})
    return out


def train_stack(cfgs: list[Config], ckpt_dir: str | Path | None = None, progress: bool = True,
                stop_after_epoch: int | None = None, on_part=None) -> list[dict]:
    """Train ``cfgs`` (one :func:`stack_key`) as stacks; returns one result per config, in order, each as
    :func:`softgrad.train.train` returns it (plus ``stack_size``). Members whose training split has another size
    train as another stack. With ``ckpt_dir`` each stack checkpoints after every epoch
    (``stack-<id>.ckpt``, id from its members' run ids) and resumes from it. ``on_part(cfgs, results)`` is
    called after each stack (the caller stores its results; then its checkpoint can go)."""
    if not cfgs:
        return []
    keys = {stack_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("train_stack: the configs differ in more than seed, lr, weight_decay, the knob and "
                         "noise_alpha (under AdamW also momentum, nesterov) (softgrad.stacked.stack_key); group them "
                         "with softgrad.stacked.group")
    c0 = cfgs[0]
    if world()[0] > 1:
        raise ValueError("engine: 'stacked' does not run under torchrun (DDP); set engine: single")
    torch.set_num_threads(effective_threads(c0))
    device = pick_device(c0.device)
    base = _base_data(c0)
    for split, y in (("train", base.y_train), ("test", base.y_test)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= base.num_classes):
            raise ValueError(f"dataset {c0.dataset!r}: {split} labels must be in [0, {base.num_classes - 1}]")
    splits = [_member_split(base, c) for c in cfgs]
    base = base.to(device)
    parts: dict[int, list[int]] = {}
    for k, (_, tr, _) in enumerate(splits):
        parts.setdefault(tr.shape[0], []).append(k)
    results: list[dict | None] = [None] * len(cfgs)
    for ks in parts.values():
        res = _train_part([cfgs[k] for k in ks], base, [splits[k] for k in ks], device, ckpt_dir, progress,
                          stop_after_epoch)
        ckpt = res[0].pop("_ckpt")
        for r in res[1:]:
            r.pop("_ckpt")
        if on_part is not None:
            on_part([cfgs[k] for k in ks], res)
        if ckpt:
            ckpt.unlink(missing_ok=True)
        for k, r in zip(ks, res):
            results[k] = r
    return results
