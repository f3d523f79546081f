"""The stacked engine: K runs of one method and task trained as one model with a leading member dimension.

Many small runs (chapter 06's pool: hundreds of MLPs that differ only in seed, learning rate and the method's
knob) cost per-op overhead, not arithmetic: one MNIST MLP step is ~43 ATen ops, each a kernel launch on a GPU.
Stacking K runs turns K small GEMMs into one batched GEMM (``torch.baddbmm``) and K small convolutions into one
grouped convolution (``groups = K``), so one step of the stack is one launch per op for all K members, and one
loss call covers K·B rows.

Shapes. Member k's parameters are slice k of stacked tensors: a ``Linear(d_in, d_out)`` is ``W (K, d_out,
d_in)``, ``b (K, d_out)``; a ``Conv2d(c, o, kh, kw)`` is ``W (K, o, c, kh, kw)``, ``b (K, o)``. Activations are
``(K, B, d)`` between linear layers (``h' = baddbmm(b[:, None], h, Wᵀ)``) and ``(B, K·c, H, W)`` between
convolutions (``conv2d(h, W.reshape(K·o, c, kh, kw), groups=K)``); the logits ``(K, B, C)`` are flattened to
``(K·B, C)`` for the loss, and member k's loss is the mean of its B rows, so the summed loss has member k's
gradient in slice k and nothing else.

What may differ between members (the rest is :func:`stack_key`): ``seed`` (init, data order, label noise,
train/validation re-split and Noisy-Softmax noise, each drawn as the single engine draws it, from a generator of
the member's own, outside the stacked step, so member k does not depend on K or on its slot), ``lr`` and
``weight_decay`` (per-member columns in the SGD update), the method's knob (``Method.knob``: a per-row column
``(K·B, 1)`` in the loss, :func:`softgrad.losses.core.is_value`) and ``noise_alpha``. Members whose training
split has another size (label noise moves the stratified split by a sample or two) train in separate stacks.

Equivalence: member k is the single-engine run of its config up to rounding (bmm is not mm: the summation order
of a batched GEMM differs), which training then amplifies; ``tests/test_stacked.py`` states the tolerance.
Evaluation, metrics, per-example test results, checkpoints and results are per member and identical in form to
:func:`softgrad.train.train`'s: evaluation runs each member's own ``nn.Module`` whose parameters are views of
the stacked tensors (:func:`softgrad.train.evaluate`, the same code as the single engine). The checkpoint of a
stack is written atomically after each epoch and a rerun of the same stack resumes from it (kill -9 safe).

Not stacked (``Config.engine`` validation says so): AS-Speed (it changes the number of optimizer steps per run),
optimizers other than SGD, augmentation, ``compile``, models other than ``mlp`` and ``lenet5``, DDP.

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
from .train import (GRAD_NORM_EVERY, TrainState, _cpu_name, _lr_factor, _param_schedule, _Run, evaluate,
                    final_examples, pick_device, world)

__all__ = ["VARYING", "stack_key", "group", "train_stack", "MAX_STACK"]

#: Config fields that may differ between the members of one stack (plus the method's knob in ``loss_params``)
VARYING = ("seed", "lr", "weight_decay", "noise_alpha")
#: the default largest stack (``runs.run_grid(max_stack=...)``; members never depend on it)
MAX_STACK = 64


def _knobs(cfg: Config) -> tuple:
    return tuple((L.LOSSES[cfg.loss].knob or {}).keys())


def stack_key(cfg: Config) -> str:
    """What members of one stack share: every field but :data:`VARYING` and the loss's knob (whether the
    Noisy-Softmax head is on is shared; its ``noise_alpha`` is not)."""
    d = cfg.to_dict()
    for k in VARYING:
        d.pop(k)
    d["noisy_head"] = cfg.noise_alpha > 0
    d["loss_params"] = {k: v for k, v in cfg.loss_params.items() if k not in _knobs(cfg)}
    return json.dumps(d, sort_keys=True)


def group(configs: list[Config], max_size: int = MAX_STACK, parts: int = 1) -> list[list[Config]]:
    """``configs`` grouped into stacks by :func:`stack_key` (first-seen order), each at most ``max_size``
    members and split into at least ``parts`` stacks where it has enough members (one per worker)."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_stack must be a positive int, got {max_size!r}")
    by: dict[str, list[Config]] = {}
    for c in configs:
        by.setdefault(stack_key(c), []).append(c)
    out = []
    for members in by.values():
        size = min(max_size, max(1, math.ceil(len(members) / max(1, parts))))
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out


# ------------------------------------------------------------------ data


def _base_data(cfg: Config) -> Dataset:
    opts = {}
    if cfg.dataset in ("synthetic", "teacher"):
        opts = dict(classes=cfg.synthetic_classes, dim=cfg.synthetic_dim, n_train=cfg.synthetic_n_train,
                    separation=cfg.synthetic_separation, label_noise=cfg.synthetic_label_noise)
    return load_dataset(cfg.dataset, root=cfg.data_root or None, **opts)


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


# ------------------------------------------------------------------ the stacked model and step


class _Stack:
    """K members with training sets of one size: stacked parameters, momentum, per-member state."""

    def __init__(self, cfgs: list[Config], base: Dataset, splits: list, device: torch.device, progress: bool):
        c0 = cfgs[0]
        self.cfgs, self.K, self.device, self.progress = cfgs, len(cfgs), device, progress
        self.x, self.N = base.x_train, splits[0][1].shape[0]
        self.conv = c0.model != "mlp"
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
        self.names = [n for n, _ in self.template.named_parameters()]
        self.P = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).to(device).requires_grad_()
                  for n in self.names}
        self.members = []
        for k, (c, m) in enumerate(zip(cfgs, models)):
            m.to(device)
            for n in self.names:
                _set_param(m, n, nn.Parameter(self.P[n].detach()[k], requires_grad=False))
            y, tr, va = splits[k]
            track = None
            if c.track_samples:
                g = torch.Generator().manual_seed(c.seed)
                track = torch.randperm(tr.shape[0], generator=g)[:c.track_samples].sort().values.to(device)
            ts = TrainState(history=[], per_sample={"index": track.tolist() if track is not None else [], "pt": []},
                            state={"k": 1, "remaining": 0}, epoch=0, step_loss={"step": [], "loss": []},
                            reliability=None, init=[self.P[n].detach()[k].clone() for n in self.names])
            mb = _Member(c, m, self.x, base.x_test, base.y_test, y.to(device), tr.to(device),
                         None if va is None else va.to(device), self.amp, ts, track)
            if c.label_noise > 0 and va is not None:  # the true labels: temperature scaling fits on them
                mb.ds.y_val_clean = base.y_train[va].to(device)
            self.members.append(mb)
        self.y = torch.stack([mb._y for mb in self.members])  # (K, N_base) labels of each member (its noise)
        self.tr = torch.stack([mb._tr for mb in self.members])  # (K, N) training indices into base
        self.bufs: list[Tensor] | None = None
        self.B = c0.batch_size
        self.steps_per_epoch = -(-self.N // self.B)
        self.lr = [c.lr for c in cfgs]
        wd = torch.tensor([c.weight_decay for c in cfgs], dtype=torch.float32, device=device)
        self.wd = None if not any(c.weight_decay for c in cfgs) else [wd.view(-1, *[1] * (p.dim() - 1))
                                                                      for p in self.P.values()]
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

    def _forward(self, idx: Tensor, y: Tensor, train: bool) -> Tensor:
        """Logits (K, B, C) of every member on its own batch ``idx`` (K, B) of indices into the data."""
        K, B = idx.shape
        P = self.P
        if self.conv:  # (B, K*c, H, W): member k's channels are group k of every convolution
            h = self.x[idx.t()]
            h = h.reshape(B, K * h.shape[2], *h.shape[3:])
        else:
            h = self.x[idx]
        grouped = self.conv
        for name, mod in self.template.features.named_children():
            pre = f"features.{name}."
            if isinstance(mod, nn.Flatten):
                h = h.reshape(B, K, -1).transpose(0, 1) if grouped else h.reshape(K, B, -1)
                grouped = False
            elif isinstance(mod, nn.Linear):
                W, b = P[pre + "weight"], P.get(pre + "bias")
                h = torch.bmm(h, W.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            elif isinstance(mod, nn.Conv2d):
                W, b = P[pre + "weight"], P.get(pre + "bias")
                h = F.conv2d(h, W.reshape(-1, *W.shape[2:]), None if b is None else b.reshape(-1), mod.stride,
                             mod.padding, mod.dilation, K * mod.groups)
            elif isinstance(mod, nn.ReLU):
                h = torch.relu(h)
            elif isinstance(mod, (nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
                h = mod(h)  # per channel: groups need nothing
            else:
                raise ValueError(f"engine: 'stacked' cannot stack layer {type(mod).__name__}; set engine: single")
        W = P["head.weight"]
        b = P.get("head.bias")
        logits = torch.bmm(h, W.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
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
            amp = W.float().norm(dim=2).gather(1, y) * f.float().norm(dim=2)
            scale = amp if head.noise == "amplitude" else (amp - f_y).clamp(min=0.0)
        if head.detach_scale:
            scale = scale.detach()
        xi = torch.stack([torch.randn((B,), generator=g, device=self.device, dtype=torch.float32)
                          for g in self.gens]) * head.noise_std
        n = {"positive": xi.abs(), "gaussian": xi, "negative": -xi.abs()}[head.sign]
        delta = (self.alpha * scale * n).to(logits.dtype)
        return logits.scatter_add(2, idx, -delta.unsqueeze(2))

    def _sgd(self, neg_lr: Tensor) -> None:
        """torch.optim.SGD's update (momentum, dampening 0, nesterov) with per-member lr and weight decay."""
        c = self.cfgs[0]
        params = list(self.P.values())
        grads = [p.grad for p in params]
        d = torch._foreach_addcmul(grads, params, self.wd) if self.wd is not None else grads
        if c.momentum:
            if self.bufs is None:
                self.bufs = [g.detach().clone() for g in d]
            else:
                torch._foreach_mul_(self.bufs, c.momentum)
                torch._foreach_add_(self.bufs, d)
            d = torch._foreach_add(d, self.bufs, alpha=c.momentum) if c.nesterov else self.bufs
        torch._foreach_addcmul_(params, d, [neg_lr.view(-1, *[1] * (p.dim() - 1)) for p in params])

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
        # every step's learning rates in one host-to-device copy (no copy, no sync inside the step)
        neg_lr = torch.tensor([[-lr * f for lr in self.lr] for f in factors], dtype=torch.float32, device=dev)
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
                        norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in self.P.values()])
                        gnorm_sum += torch.linalg.vector_norm(norms, dim=0)
                        gnorm_n += 1
                    self._sgd(neg_lr[i])
                for p in self.P.values():
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
        return {"P": {n: p.detach() for n, p in self.P.items()}, "bufs": self.bufs,
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
        st.load(torch.load(ckpt, map_location=device, weights_only=False))
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
        raise ValueError("train_stack: the configs differ in more than seed, lr, weight_decay and the knob "
                         "(softgrad.stacked.stack_key); group them with softgrad.stacked.group")
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
