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

import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import losses as L
from . import schedules as S
from .config import Config, device_available, effective_threads
from .data import Batcher, Dataset, load_dataset
from .models import build_model
from .store import atomic_torch_save

__all__ = ["pick_device", "prepare_data", "train", "evaluate", "calibration"]

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


def _bin_sums(conf: Tensor, correct: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width confidence bin ((b-1)/bins, b/bins]: sample count, sum of confidence, sum of correct."""
    # a diverged model has nan confidences: count them in the lowest bin instead of failing the run
    conf, correct = conf.double().cpu().nan_to_num(0.0).clamp(0, 1), correct.double().cpu()
    idx = (conf * bins).ceil().clamp(1, bins).long() - 1
    return (torch.bincount(idx, minlength=bins).double(), torch.bincount(idx, conf, minlength=bins),
            torch.bincount(idx, correct, minlength=bins))


def reliability_bins(conf: Tensor, correct: Tensor, bins: int = 15) -> dict:
    """Per-bin ``count``, mean ``conf`` and ``acc`` (None for empty bins) for a reliability diagram."""
    n, s_conf, s_acc = _bin_sums(conf, correct, bins)
    return {"count": n.long().tolist(),
            "conf": [round(float(c / k), 6) if k else None for c, k in zip(s_conf, n)],
            "acc": [round(float(a / k), 6) if k else None for a, k in zip(s_acc, n)]}


def calibration(conf: Tensor, correct: Tensor, bins: int = 15) -> tuple[float, float]:
    """ECE and MCE with ``bins`` equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b |B_b|/n |acc(B_b) - conf(B_b)|``, ``MCE = max_b |acc(B_b) - conf(B_b)|`` over
    non-empty bins; bin b holds confidences in ``((b-1)/bins, b/bins]``.
    """
    n, s_conf, s_acc = _bin_sums(conf, correct, bins)
    nz = n > 0
    gap = (s_acc[nz] / n[nz] - s_conf[nz] / n[nz]).abs()
    return float((n[nz] / n.sum() * gap).sum()), float(gap.max()) if nz.any() else 0.0


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


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the NLL of ``softmax(logits / T)``.

    logits ``(N, C)``, y ``(N,)``. The NLL is convex in 1/T; it is minimised over log T in [log 0.05, log 20]
    (a bounded scalar search, scipy) in float64.
    """
    from scipy.optimize import minimize_scalar

    z, y = logits.detach().double().cpu(), y.cpu()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    r = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(r.x))


def scaled_metrics(logits: Tensor, y: Tensor, t: float) -> dict:
    """NLL, ECE and MCE of ``softmax(logits / t)`` (accuracy does not change with t)."""
    z = logits.double() / t
    logp = torch.log_softmax(z, 1)
    conf, pred = logp.exp().max(1)
    ece, mce = calibration(conf, pred == y)
    return {"nll": float(-logp.gather(1, y[:, None]).mean()), "ece": ece, "mce": mce}


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
    params = {**L.loss_params(cfg.loss), **cfg.loss_params}
    if cfg.warmup == "beta":
        s = S.gradient_decay_warmup(cfg.warmup_start, params["beta"], cfg.warmup_epochs, cfg.warmup_shape)
        return lambda t: {"beta": s.value(t)}
    if cfg.warmup == "delta":
        s = S.delta_warmup(params["delta"], cfg.delta_ratio)
        return lambda t: {"delta": s.value(t / cfg.epochs)}
    return lambda t: {}


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


def _train(cfg: Config, ds: Dataset, device: torch.device, ckpt_path, progress: bool,
           stop_after_epoch: int | None) -> dict:
    # Data parallel (torchrun): every rank draws the same global batch and trains on its strided shard;
    # each shard's mean loss is weighted by its share of the global batch, so DDP's gradient average equals
    # the single-process gradient of the global batch. Only rank 0 writes checkpoints and shows progress.
    n_world, rank = world()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds.input_shape, ds.num_classes).to(device)
    conv = cfg.model != "mlp"
    if device.type == "cuda" and conv:
        model = model.to(memory_format=torch.channels_last)
    init = [p.detach().clone() for p in model.parameters()]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = L.make_loss(cfg.loss, **cfg.loss_params)
    schedule = _param_schedule(cfg)
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    fwd = torch.compile(model) if cfg.compile else model
    if n_world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)
        progress = progress and rank == 0
    batcher = Batcher(ds.x_train, ds.y_train, cfg.batch_size, cfg.seed, cfg.crop_padding, cfg.hflip)
    steps_per_epoch = len(batcher)
    lr_const = cfg.lr_schedule == "constant" and not cfg.lr_warmup_epochs
    track = None
    if cfg.track_samples:
        g = torch.Generator().manual_seed(cfg.seed)
        track = torch.randperm(ds.x_train.shape[0], generator=g)[:cfg.track_samples].sort().values.to(device)

    history: list[dict] = []
    per_sample = {"index": track.tolist() if track is not None else [], "pt": []}
    step_loss = {"step": [], "loss": []}  # cfg.log_every > 0: training-batch loss every log_every steps
    state = {"k": 1, "remaining": 0}  # AS-Speed: window length and micro-batches left in it
    start_epoch = 0
    reliability = None  # test-set reliability bins of the final epoch
    ckpt_path = Path(ckpt_path) if ckpt_path else None
    if ckpt_path and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["rng_cpu"])
        if device.type == "cuda" and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ck["rng_cuda"])
        history, per_sample, state, start_epoch = ck["history"], ck["per_sample"], ck["state"], ck["epoch"]
        step_loss = ck.get("step_loss", step_loss)
        reliability = ck.get("reliability")
        init = [t.to(device) for t in ck["init"]]

    splits = [("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)]
    if ds.x_val is not None:
        splits.append(("val", ds.x_val, ds.y_val))

    def metrics_row(epoch: int, final: bool = False) -> tuple[dict, dict]:
        rng = torch.get_rng_state()  # evaluation must not consume the training RNG stream
        m = {split: evaluate(model, x, y, loss_fn, amp=amp) for split, x, y in splits}
        torch.set_rng_state(rng)
        row = {"epoch": epoch, "weight_dist": float(torch.sqrt(sum(((p.detach() - p0) ** 2).sum()
                                                                   for p, p0 in zip(model.parameters(), init))))}
        row.update({f"param_{k}": v for k, v in loss_fn.params.items() if isinstance(v, (int, float))})
        for split, r in m.items():
            row.update({f"{split}_{k}": v for k, v in r.items() if not k.startswith("_")})
        if final and "val" in m:  # temperature scaling: T fitted on validation NLL, applied to test
            t = fit_temperature(m["val"]["_logits"], ds.y_val)
            row["ts_temperature"] = t
            for split in ("val", "test"):
                row.update({f"{split}_{k}_ts": v for k, v in
                            scaled_metrics(m[split]["_logits"], m[split]["_y"], t).items()})
        if track is not None:
            per_sample["pt"].append([round(v, 5) for v in m["train"]["_pt"][track].tolist()])
        return row, m["test"]

    if start_epoch == 0:  # epoch 0: the initial model, before any step (initial logit norm, loss, p_t)
        loss_fn.params.update(schedule(0.0))
        history.append(metrics_row(0)[0])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"{cfg.loss} seed={cfg.seed}", leave=False)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        # accumulate on the device; one host sync per epoch, not per step (matters on GPUs)
        run_loss = torch.zeros((), device=device)
        gnorm_sum = torch.zeros((), device=device)
        n_seen, opt_steps, gnorm_n = 0, 0, 0
        for i, (xb, yb, _) in enumerate(batcher.epoch(epoch)):
            t = epoch + i / steps_per_epoch
            n_glob = yb.shape[0]
            if n_world > 1:
                xb, yb = xb[rank::n_world], yb[rank::n_world]
            if not lr_const:
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * _lr_factor(cfg, t)
            loss_fn.params.update(schedule(t))  # endpoints validated with the config
            if conv and device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = fwd(xb, yb)
            if cfg.as_speed:
                per = loss_fn.per_sample(logits.float(), yb)
                loss = per.mean()
            else:
                loss = loss_fn(logits.float(), yb)  # reduction 'mean'; fused for CE
            if cfg.as_speed and state["remaining"] == 0:  # first micro-batch of a window
                n_zero = L.zero_loss_mask(per, yb).sum()
                if n_world > 1:  # every rank must agree on k
                    torch.distributed.all_reduce(n_zero)
                state["k"] = S.as_speed_next_k(n_glob, int(n_zero), state["k"], cfg.as_speed_lambda,
                                               cfg.as_speed_kmax)
                state["remaining"] = state["k"]
            k = state["k"] if cfg.as_speed else 1
            share = yb.shape[0] * n_world / n_glob  # 1 in one process
            (loss * (share / k)).backward()
            run_loss.add_(loss.detach(), alpha=yb.shape[0])
            if cfg.log_every and (epoch * steps_per_epoch + i) % cfg.log_every == 0:  # a host sync: opt-in
                step_loss["step"].append(epoch * steps_per_epoch + i)
                step_loss["loss"].append(float(loss.detach()))
            n_seen += yb.shape[0]
            state["remaining"] = max(0, state["remaining"] - 1) if cfg.as_speed else 0
            last = i == steps_per_epoch - 1
            if state["remaining"] == 0 or last:  # windows never span epochs
                if opt_steps % GRAD_NORM_EVERY == 0:  # a fixed subsample of steps: 1/8 of the cost, same mean
                    grads = [p.grad for p in model.parameters() if p.grad is not None]
                    gnorm_sum += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                    gnorm_n += 1
                opt.step()
                opt.zero_grad(set_to_none=True)
                opt_steps += 1
                state["remaining"] = 0
        if n_world > 1:  # the running loss and sample count over all ranks
            tot = torch.stack([run_loss, torch.tensor(float(n_seen), device=device)])
            torch.distributed.all_reduce(tot)
            run_loss, n_seen = tot[0], int(tot[1])
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_time = time.perf_counter() - t0
        last_epoch = epoch + 1 == cfg.epochs
        if last_epoch or (epoch + 1) % cfg.eval_every == 0:
            row, te = metrics_row(epoch + 1, final=last_epoch)
        else:  # not an evaluation epoch: training statistics only
            row, te = {"epoch": epoch + 1}, None
        row.update({"train_loss_running": float(run_loss) / n_seen, "lr_now": opt.param_groups[0]["lr"],
                    "opt_steps": opt_steps, "accum_k": state["k"] if cfg.as_speed else 1,
                    "grad_norm": float(gnorm_sum) / max(1, gnorm_n), "epoch_time": epoch_time,
                    "samples_per_s": n_seen / epoch_time})
        history.append(row)
        if epoch + 1 == cfg.epochs:
            reliability = reliability_bins(te["_conf"], te["_correct"])
        if bar is not None:
            bar.update(1)
            if te is not None:
                bar.set_postfix(acc=f"{te['acc']:.3f}", nll=f"{te['nll']:.3f}")
        if ckpt_path and rank == 0:
            atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
                          "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                          "history": history, "per_sample": per_sample, "state": state, "epoch": epoch + 1,
                          "step_loss": step_loss,
                          "reliability": reliability,
                          "init": [t.cpu() for t in init]}, ckpt_path)
        if stop_after_epoch is not None and epoch + 1 == stop_after_epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1} (test hook)")
    if bar is not None:
        bar.close()
    final = dict(history[-1])
    final["train_time"] = sum(h.get("epoch_time", 0.0) for h in history)
    final["total_opt_steps"] = sum(h.get("opt_steps", 0) for h in history)
    return {"history": history, "final": final, "per_sample": per_sample, "reliability": reliability,
            "step_loss": step_loss,
            "device": str(device),
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
