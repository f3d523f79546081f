"""The trainer: one :class:`~softgrad.config.Config` -> per-epoch metrics.

GPU first: the whole data set lives on the device (:class:`~softgrad.data.Batcher`); the forward pass
runs under bf16 autocast on CUDA (``amp='auto'``; ``amp='bf16'`` also on CPU, which the tests use so the
mixed-precision path runs everywhere), conv nets use channels_last on CUDA, ``compile=True`` wraps the
model in ``torch.compile``. The CPU thread count is always set (:func:`~softgrad.config.effective_threads`). Device: ``cuda`` if available, else ``mps``, else ``cpu``.

Per evaluated epoch (every ``eval_every`` epochs and the last; clean logits of each full split after the epoch):
``{split}_loss`` (the method's own loss), ``{split}_nll`` (plain CE), ``{split}_acc``,
``{split}_ece`` / ``{split}_mce`` (15 equal-width confidence bins), ``{split}_pt`` (mean target
probability), ``{split}_zero_frac`` (fraction of samples whose method loss is exactly 0),
``{split}_logit_norm`` (mean L2 norm of the logit vector), for split in train, test and (``val_fraction > 0``)
val; at the last epoch with a validation split also ``ts_temperature`` (T fitted on validation NLL) and
``{val,test}_{nll,ece,mce}_ts`` (after dividing the logits by T); plus ``train_loss_running`` (mean
training-batch loss as optimised), ``weight_dist`` (L2 distance of all weights from init),
``grad_norm`` (mean global gradient norm over every 8th optimizer step of the epoch), ``opt_steps``, ``accum_k``,
``lr_now`` (the learning rate at the end of the epoch), loss-parameter values, ``epoch_time`` and ``samples_per_s`` (training only).

Checkpoints (model, optimiser, RNG, AS-Speed state, history) are written atomically at the end of
each epoch when ``ckpt_path`` is given; a run started with an existing checkpoint resumes from it
and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from . import losses as L
from .config import Config, device_available, effective_threads
from .data import Batcher, Dataset, load_dataset
from .models import build_model
from .calibration import calibration, fit_temperature, reliability_bins, scaled_metrics
from .store import atomic_torch_save

__all__ = ["pick_device", "prepare_data", "train", "evaluate", "calibration", "TrainState", "save_checkpoint",
           "load_checkpoint", "ASSpeed"]

GRAD_NORM_EVERY = 8  # grad_norm is the mean global gradient norm over every 8th optimizer step of an epoch


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        if name in ("cuda", "mps") and not device_available(name):
            raise ValueError(f"device: {name!r} requested but it is not available on this machine")
        return torch.device(name)
    for accel in ("cuda", "mps"):
        if device_available(accel):
            return torch.device(accel)
    return torch.device("cpu")


def prepare_data(cfg: Config) -> Dataset:
    opts = {}
    if cfg.dataset in ("synthetic", "teacher"):
        opts = dict(classes=cfg.synthetic_classes, dim=cfg.synthetic_dim, n_train=cfg.synthetic_n_train,
                    separation=cfg.synthetic_separation, label_noise=cfg.synthetic_label_noise)
    ds = load_dataset(cfg.dataset, root=cfg.data_root or None, **opts)
    # the run's seed fixes the label noise and the validation split, as it fixes init and data order, so
    # two methods run with the same seed see the same data: their differences are paired
    ds = ds.with_label_noise(cfg.label_noise, seed=cfg.seed)
    if cfg.val_fraction > 0:
        ds = ds.split_validation(cfg.val_fraction, seed=cfg.seed)
    return ds


@torch.no_grad()
def evaluate(model, x: Tensor, y: Tensor, loss_fn: L.SoftmaxLoss, batch: int = 2048, amp: bool = False) -> dict:
    """Metrics of the clean model on (x, y); also returns per-sample p_t and method loss."""
    model.eval()
    parts = []
    for i in range(0, x.shape[0], batch):
        with torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
            logits = model(x[i:i + batch])
        parts.append(logits.float())
    logits = torch.cat(parts)
    logp = torch.log_softmax(logits, 1)
    p = logp.exp()
    conf, pred = p.max(1)
    correct = pred == y
    method = loss_fn.per_sample(logits, y)
    ece, mce = calibration(conf, correct)
    return {"_logits": logits,
        "loss": float(method.mean()), "nll": float(-logp.gather(1, y[:, None]).mean()),
        "acc": float(correct.double().mean()), "ece": ece, "mce": mce,
        "pt": float(p.gather(1, y[:, None]).mean()), "zero_frac": float(L.zero_loss_mask(method, y).double().mean()),
        "logit_norm": float(logits.norm(dim=1).mean()),
        "_y": y, "_pt": p.gather(1, y[:, None]).squeeze(1), "_loss": method, "_conf": conf, "_correct": correct,
    }


def _lr_factor(cfg: Config, t: float) -> float:
    """Learning-rate multiplier at training time t (in epochs)."""
    if cfg.lr_warmup_epochs and t < cfg.lr_warmup_epochs:
        return (t + 1e-12) / cfg.lr_warmup_epochs
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t / cfg.epochs)))
    if cfg.lr_schedule == "step":
        return cfg.step_gamma ** int(t // cfg.step_every)
    return 1.0


def _param_schedule(cfg: Config) -> Callable[[float], dict]:
    """Loss parameters as a function of training time t (epochs)."""
    m = L.LOSSES[cfg.loss]
    if cfg.warmup == "none" or m.warmup is None:
        return lambda t: {}
    return m.warmup.schedule(cfg, {**m.defaults(), **cfg.loss_params})  # the method's declared warm-up


def train(cfg: Config, ckpt_path: str | Path | None = None, progress: bool = True,
          stop_after_epoch: int | None = None) -> dict:
    """Train ``cfg``; returns {'history': [per-epoch dicts], 'final': {...}, 'per_sample': {...}, 'device'}.

    ``stop_after_epoch`` (tests) raises :class:`KeyboardInterrupt` after that epoch's checkpoint,
    as a kill would.
    """
    torch.set_num_threads(effective_threads(cfg))  # part of the run id: results differ in the last bits
    device = pick_device(cfg.device)
    device = _init_distributed(device)
    ds = prepare_data(cfg).to(device)
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):  # once, so the per-step loss need not
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ds.num_classes):
            raise ValueError(f"dataset {cfg.dataset!r}: {split} labels must be in [0, {ds.num_classes - 1}]")
    with L.implementation(cfg.loss_impl):
        return _train(cfg, ds, device, ckpt_path, progress, stop_after_epoch)


def world() -> tuple[int, int]:
    """(world size, rank): (1, 0) unless torch.distributed is initialised (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _init_distributed(device: torch.device) -> torch.device:
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group (NCCL on CUDA, gloo on CPU)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _parallel(fwd, device: torch.device, n_world: int):
    """DDP around the forward module under torchrun (every rank draws the same global batch and trains on its
    strided shard; see :meth:`_Run.train_epoch`), else the module itself."""
    if n_world <= 1:
        return fwd
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)


@dataclasses.dataclass
class TrainState:
    """What a run has produced so far; the checkpoint schema (with the model, optimiser and RNG states).

    ``state`` is AS-Speed's window (``k``, micro-batches ``remaining``); ``epoch`` the epochs done; ``init``
    the initial parameters (for ``weight_dist``); ``reliability`` the final epoch's test reliability bins."""

    history: list
    per_sample: dict
    state: dict
    epoch: int
    step_loss: dict
    reliability: dict | None
    init: list


def save_checkpoint(path: Path, model, opt, device: torch.device, ts: TrainState) -> None:
    """Everything a resumed run needs, written atomically (:func:`~softgrad.store.atomic_torch_save`)."""
    atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
                       "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                       "history": ts.history, "per_sample": ts.per_sample, "state": ts.state, "epoch": ts.epoch,
                       "step_loss": ts.step_loss, "reliability": ts.reliability,
                       "init": [t.cpu() for t in ts.init]}, path)


def load_checkpoint(path: Path, model, opt, device: torch.device, ts: TrainState) -> TrainState:
    """Restore model, optimiser and RNG from :func:`save_checkpoint`'s file; returns its :class:`TrainState`."""
    ck = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    torch.set_rng_state(ck["rng_cpu"])
    if device.type == "cuda" and ck.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(ck["rng_cuda"])
    return TrainState(ck["history"], ck["per_sample"], ck["state"], ck["epoch"], ck.get("step_loss", ts.step_loss),
                      ck.get("reliability"), [t.to(device) for t in ck["init"]])


class ASSpeed:
    """AS-Speed (Lv et al. 2025): gradient accumulation over a window of ``k`` micro-batches, ``k`` set at each
    window's first micro-batch from its zero-loss count (:func:`~softgrad.losses.as_speed_next_k`). Off, every
    micro-batch is its own window (k = 1). ``state`` (``k``, ``remaining``) is checkpointed."""

    def __init__(self, cfg: Config, state: dict):
        self.on, self.lam, self.k_max, self.state = cfg.as_speed, cfg.as_speed_lambda, cfg.as_speed_kmax, state

    def window(self, per: Tensor | None, yb: Tensor, n_glob: int, n_world: int) -> int:
        """The accumulation length for this micro-batch (``per``: its per-sample losses)."""
        if self.on and self.state["remaining"] == 0:  # first micro-batch of a window
            n_zero = L.zero_loss_mask(per, yb).sum()
            if n_world > 1:  # every rank must agree on k
                torch.distributed.all_reduce(n_zero)
            self.state["k"] = L.as_speed_next_k(n_glob, int(n_zero), self.state["k"], self.lam, self.k_max)
            self.state["remaining"] = self.state["k"]
        return self.state["k"] if self.on else 1

    def consumed(self) -> bool:
        """One micro-batch done; whether its window is complete (time for an optimizer step)."""
        self.state["remaining"] = max(0, self.state["remaining"] - 1) if self.on else 0
        return self.state["remaining"] == 0

    def close(self) -> None:
        self.state["remaining"] = 0  # windows never span epochs

    @property
    def k(self) -> int:
        return self.state["k"] if self.on else 1


class _Run:
    """One training run's objects, built in a fixed order (the global RNG draws of model init come first)."""

    def __init__(self, cfg: Config, ds: Dataset, device: torch.device, progress: bool):
        self.cfg, self.ds, self.device = cfg, ds, device
        self.n_world, self.rank = world()
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, ds.input_shape, ds.num_classes).to(device)
        self.conv = len(ds.input_shape) == 3 and cfg.model != "mlp"  # image conv nets: channels_last on CUDA
        if device.type == "cuda" and self.conv:
            self.model = self.model.to(memory_format=torch.channels_last)
        init = [p.detach().clone() for p in self.model.parameters()]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                       nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss_fn = L.make_loss(cfg.loss, **cfg.loss_params)
        self.schedule = _param_schedule(cfg)
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
        self.fwd = _parallel(torch.compile(self.model) if cfg.compile else self.model, device, self.n_world)
        self.progress = progress and self.rank == 0  # only rank 0 shows progress and writes checkpoints
        self.batcher = Batcher(ds.x_train, ds.y_train, cfg.batch_size, cfg.seed, cfg.crop_padding, cfg.hflip)
        self.steps_per_epoch = len(self.batcher)
        self.lr_const = cfg.lr_schedule == "constant" and not cfg.lr_warmup_epochs
        self.track = None
        if cfg.track_samples:
            g = torch.Generator().manual_seed(cfg.seed)
            self.track = torch.randperm(ds.x_train.shape[0], generator=g)[:cfg.track_samples].sort().values.to(device)
        self.ts = TrainState(history=[], per_sample={"index": self.track.tolist() if self.track is not None else [],
                                                     "pt": []},
                             state={"k": 1, "remaining": 0}, epoch=0,
                             step_loss={"step": [], "loss": []},  # log_every > 0: batch loss every log_every steps
                             reliability=None, init=init)
        self.splits = [("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)]
        if ds.x_val is not None:
            self.splits.append(("val", ds.x_val, ds.y_val))

    def metrics_row(self, epoch: int, final: bool = False) -> tuple[dict, dict]:
        """The evaluated metrics after ``epoch`` (module docstring), and the test split's raw evaluation."""
        rng = torch.get_rng_state()  # evaluation must not consume the training RNG stream
        m = {split: evaluate(self.model, x, y, self.loss_fn, amp=self.amp) for split, x, y in self.splits}
        torch.set_rng_state(rng)
        row = {"epoch": epoch, "weight_dist": float(torch.sqrt(sum(((p.detach() - p0) ** 2).sum()
                                                                   for p, p0 in zip(self.model.parameters(), self.ts.init))))}
        row.update({f"param_{k}": v for k, v in self.loss_fn.params.items() if isinstance(v, (int, float))})
        for split, r in m.items():
            row.update({f"{split}_{k}": v for k, v in r.items() if not k.startswith("_")})
        if final and "val" in m:  # temperature scaling: T fitted on validation NLL, applied to test
            # Under label noise T is fitted on the validation split's *true* labels (a small clean calibration
            # set): the test labels are clean, and a T fitted to noisy labels learns the noise rate, not the
            # model's miscalibration. The fit on the noisy labels is kept beside it (``*_ts_noisyval``).
            clean = self.ds.y_val_clean
            t = fit_temperature(m["val"]["_logits"], self.ds.y_val if clean is None else clean)
            row["ts_temperature"] = t
            for split in ("val", "test"):
                row.update({f"{split}_{k}_ts": v for k, v in
                            scaled_metrics(m[split]["_logits"], m[split]["_y"], t).items()})
            if clean is not None:
                tn = fit_temperature(m["val"]["_logits"], self.ds.y_val)
                row["ts_temperature_noisyval"] = tn
                row.update({f"test_{k}_ts_noisyval": v for k, v in
                            scaled_metrics(m["test"]["_logits"], m["test"]["_y"], tn).items()})
        if self.track is not None:
            self.ts.per_sample["pt"].append([round(v, 5) for v in m["train"]["_pt"][self.track].tolist()])
        return row, m["test"]

    def train_epoch(self, epoch: int, speed: ASSpeed) -> dict:
        """One epoch of optimisation; its training statistics. Under DDP each rank trains on its strided shard
        of the global batch and weights its mean loss by its share, so DDP's gradient average equals the
        single-process gradient of the global batch."""
        cfg, device, n_world, rank = self.cfg, self.device, self.n_world, self.rank
        self.model.train()
        t0 = time.perf_counter()
        # accumulate on the device; one host sync per epoch, not per step (matters on GPUs)
        run_loss = torch.zeros((), device=device)
        gnorm_sum = torch.zeros((), device=device)
        n_seen, opt_steps, gnorm_n = 0, 0, 0
        for i, (xb, yb, _) in enumerate(self.batcher.epoch(epoch)):
            t = epoch + i / self.steps_per_epoch
            n_glob = yb.shape[0]
            if n_world > 1:
                xb, yb = xb[rank::n_world], yb[rank::n_world]
            if not self.lr_const:
                for g in self.opt.param_groups:
                    g["lr"] = cfg.lr * _lr_factor(cfg, t)
            self.loss_fn.params.update(self.schedule(t))  # endpoints validated with the config
            if self.conv and device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, torch.bfloat16, enabled=self.amp):
                logits = self.fwd(xb, yb)
            per = None
            if cfg.as_speed:
                per = self.loss_fn.per_sample(logits.float(), yb)
                loss = per.mean()
            else:
                loss = self.loss_fn(logits.float(), yb)  # reduction 'mean'; fused for CE
            k = speed.window(per, yb, n_glob, n_world)
            share = yb.shape[0] * n_world / n_glob  # 1 in one process
            (loss * (share / k)).backward()
            run_loss.add_(loss.detach(), alpha=yb.shape[0])
            if cfg.log_every and (epoch * self.steps_per_epoch + i) % cfg.log_every == 0:  # a host sync: opt-in
                self.ts.step_loss["step"].append(epoch * self.steps_per_epoch + i)
                self.ts.step_loss["loss"].append(float(loss.detach()))
            n_seen += yb.shape[0]
            if speed.consumed() or i == self.steps_per_epoch - 1:  # windows never span epochs
                if opt_steps % GRAD_NORM_EVERY == 0:  # a fixed subsample of steps: 1/8 of the cost, same mean
                    grads = [p.grad for p in self.model.parameters() if p.grad is not None]
                    gnorm_sum += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                    gnorm_n += 1
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                opt_steps += 1
                speed.close()
        if n_world > 1:  # the running loss and sample count over all ranks
            tot = torch.stack([run_loss, torch.tensor(float(n_seen), device=device)])
            torch.distributed.all_reduce(tot)
            run_loss, n_seen = tot[0], int(tot[1])
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_time = time.perf_counter() - t0
        return {"train_loss_running": float(run_loss) / n_seen, "lr_now": self.opt.param_groups[0]["lr"],
                "opt_steps": opt_steps, "accum_k": speed.k, "grad_norm": float(gnorm_sum) / max(1, gnorm_n),
                "epoch_time": epoch_time, "samples_per_s": n_seen / epoch_time}


def _train(cfg: Config, ds: Dataset, device: torch.device, ckpt_path, progress: bool,
           stop_after_epoch: int | None) -> dict:
    """The epoch loop: resume, evaluate epoch 0, train and evaluate each epoch, checkpoint, return the result."""
    run = _Run(cfg, ds, device, progress)
    ckpt_path = Path(ckpt_path) if ckpt_path else None
    if ckpt_path and ckpt_path.exists():
        run.ts = load_checkpoint(ckpt_path, run.model, run.opt, device, run.ts)
    ts = run.ts
    speed = ASSpeed(cfg, ts.state)
    if ts.epoch == 0:  # epoch 0: the initial model, before any step (initial logit norm, loss, p_t)
        run.loss_fn.params.update(run.schedule(0.0))
        ts.history.append(run.metrics_row(0)[0])
    bar = None
    if run.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=ts.epoch, desc=f"{cfg.loss} seed={cfg.seed}", leave=False)
    for epoch in range(ts.epoch, cfg.epochs):
        stats = run.train_epoch(epoch, speed)
        last_epoch = epoch + 1 == cfg.epochs
        if last_epoch or (epoch + 1) % cfg.eval_every == 0:
            row, te = run.metrics_row(epoch + 1, final=last_epoch)
        else:  # not an evaluation epoch: training statistics only
            row, te = {"epoch": epoch + 1}, None
        row.update(stats)
        ts.history.append(row)
        if last_epoch:
            ts.reliability = reliability_bins(te["_conf"], te["_correct"])
        if bar is not None:
            bar.update(1)
            if te is not None:
                bar.set_postfix(acc=f"{te['acc']:.3f}", nll=f"{te['nll']:.3f}")
        ts.epoch = epoch + 1
        if ckpt_path and run.rank == 0:
            save_checkpoint(ckpt_path, run.model, run.opt, device, ts)
        if stop_after_epoch is not None and epoch + 1 == stop_after_epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1} (test hook)")
    if bar is not None:
        bar.close()
    final = dict(ts.history[-1])
    final["train_time"] = sum(h.get("epoch_time", 0.0) for h in ts.history)
    final["total_opt_steps"] = sum(h.get("opt_steps", 0) for h in ts.history)
    return {"history": ts.history, "final": final, "per_sample": ts.per_sample, "reliability": ts.reliability,
            "step_loss": ts.step_loss, "device": str(device),
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else _cpu_name()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
