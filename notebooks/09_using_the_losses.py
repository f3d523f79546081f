# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Using the losses in your own code
#
# Every method in this book is an `nn.CrossEntropyLoss` drop-in: `softgrad.losses.make_loss(name, **params)`
# returns a module with CE's options (`weight`, `ignore_index`, `reduction`, `label_smoothing` where the method
# defines it) that accepts `(N, C)`, `(C,)` and `(N, C, d1, ..., dk)` logits, and targets of class indices or,
# as `nn.CrossEntropyLoss` does, of class probabilities (mixup, cutmix, distillation). This page runs four ways
# of using them, each on a tiny model and real data (scikit-learn's 8×8 digits) on the CPU, so the examples are
# executed every time the book is built and cannot rot:
#
# 1. a plain PyTorch loop (and the Noisy Softmax head, which replaces the last layer instead of the loss);
# 2. a [timm](https://github.com/huggingface/pytorch-image-models) model, optimizer, scheduler and Mixup
#    (class-probability targets);
# 3. a Hugging Face `transformers.Trainer` whose `compute_loss` is overridden;
# 4. AS-Softmax with AS-Speed's adaptive gradient accumulation (Lv et al. 2025).
#
# Each prints the training loss before and after a few dozen steps and the held-out accuracy. Section 5 states
# where a method's result depends on a rule the papers leave implicit: ties among logits, and targets that are
# distributions.

# %% tags=["parameters"]
profile = "ci"
base = {}
sweeps = {}
extra = {"steps": 60, "seed": 0}

# %% tags=["remove-cell"]
import logging
import tempfile
import warnings

import torch
from sklearn.datasets import load_digits

warnings.filterwarnings("ignore")  # library deprecation chatter is not part of the examples
logging.getLogger("transformers").setLevel(logging.ERROR)
from softgrad.config import thread_override

torch.set_num_threads(thread_override() or 1)  # SOFTGRAD_THREADS: softgrad.goldens simulates other machines
STEPS, SEED = extra["steps"], extra["seed"]
trained = {}  # example -> (first loss, last loss, test accuracy): the checks at the end of the page

digits = load_digits()
X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16  # (1797, 1, 8, 8)
Y = torch.tensor(digits.target)
X_train, Y_train, X_test, Y_test = X[:1400], Y[:1400], X[1400:], Y[1400:]


def accuracy(model, x=X_test, y=Y_test):
    with torch.no_grad():
        out = model(x)
        logits = out["logits"] if isinstance(out, dict) else out
    return (logits.argmax(1) == y).float().mean().item()


# %% tags=["remove-input"]
from softgrad.book import page_header
from softgrad.runs import notebook_params

page_header("09_using_the_losses", notebook_params("09_using_the_losses", profile, base, sweeps, extra))

# %% [markdown]
# ## 1. A plain PyTorch loop
# Replace `nn.CrossEntropyLoss()` by `make_loss(...)`; nothing else changes.

# %% tags=["nbval-ignore-output"]
from torch import nn

from softgrad.losses import make_loss

torch.manual_seed(SEED)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
loss_fn = make_loss("gradient_decay", beta=0.3)  # was: nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
g = torch.Generator().manual_seed(SEED)
first = None
for step in range(STEPS):
    idx = torch.randint(0, len(X_train), (64,), generator=g)
    loss = loss_fn(model(X_train[idx]), Y_train[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    first = loss.item() if first is None else first
print(f"gradient decay β=0.3: loss {first:.2f} → {loss.item():.2f} (J_β = CE with margin −ln β, plus ln β: "
      f"negative once p_t is large, for β < 1); test accuracy {accuracy(model):.2f}")
trained["plain loop, gradient decay"] = (first, loss.item(), accuracy(model))

# %% [markdown]
# ### 1b. Noisy Softmax: a head, not a loss
# Noisy Softmax (Chen, Deng and Du 2017) perturbs the target logit during training, so it replaces the model's
# last layer rather than the loss: `NoisySoftmaxHead(features, classes, alpha=α)` (bias-free, as the paper's
# noise needs `‖W_y‖‖x‖`) takes the features and, in training, the target; the loss stays plain CE. In
# evaluation, or without a target, it is an ordinary linear head. The paper's α ≈ 0.1; chapter 06 searched
# 0.01–0.5. (The loop is the one above with the head in place of the last layer: its code is collapsed.)

# %% tags=["hide-input", "nbval-ignore-output"]
from softgrad.noisy import NoisySoftmaxHead

torch.manual_seed(SEED)
body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
head = NoisySoftmaxHead(64, 10, alpha=0.1)  # was: nn.Linear(64, 10)
opt = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
g = torch.Generator().manual_seed(SEED)
first = None
for step in range(STEPS):
    idx = torch.randint(0, len(X_train), (64,), generator=g)
    logits = head(body(X_train[idx]), Y_train[idx])  # the target's logit carries the annealed noise
    loss = nn.functional.cross_entropy(logits, Y_train[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    first = loss.item() if first is None else first
head.eval()
noisy_model = lambda x: head(body(x))  # noqa: E731 (evaluation: no target, no noise)
print(f"Noisy Softmax α=0.1: loss {first:.2f} → {loss.item():.2f}; test accuracy {accuracy(noisy_model):.2f}")
trained["plain loop, Noisy Softmax head"] = (first, loss.item(), accuracy(noisy_model))

# %% [markdown]
# ## 2. timm: model, optimizer, scheduler and Mixup from timm, the loss from softgrad
# timm's training script builds its loss from flags; in your own timm loop the loss is any module. timm's
# `Mixup` (and CutMix: `cutmix_alpha`) turns the labels into class probabilities, label smoothing included, and
# feeds them to the loss as `nn.CrossEntropyLoss` takes them: a float target of the logits' shape. (The
# training logs of this and the next example are collapsed; section 4's checks below read their results.)

# %% tags=["hide-output", "nbval-ignore-output"]
import numpy as np
import timm
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

torch.manual_seed(SEED)
np.random.seed(SEED)  # Mixup draws its mixing weights from NumPy's global generator
model = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1)
opt = create_optimizer_v2(model, opt="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4)
sched = CosineLRScheduler(opt, t_initial=STEPS)
mixup = Mixup(mixup_alpha=0.2, label_smoothing=0.1, num_classes=10)  # targets: (64, 10) class probabilities
loss_fn = make_loss("temperature", beta=2.0)  # CE(βz, q); the smoothing is in q now
g = torch.Generator().manual_seed(SEED)
first = None
model.train()
for step in range(STEPS):
    idx = torch.randint(0, len(X_train), (64,), generator=g)
    x, q = mixup(X_train[idx], Y_train[idx])  # mixes the batch in place (a copy: indexing copies)
    loss = loss_fn(model(x), q)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step_update(step + 1)
    first = loss.item() if first is None else first
model.eval()
print(f"timm resnet10t, Mixup (label smoothing 0.1) into temperature β=2: loss {first:.2f} → {loss.item():.2f}; "
      f"test accuracy {accuracy(model):.2f}")
trained["timm + Mixup, temperature"] = (first, loss.item(), accuracy(model))

# %% [markdown]
# ## 3. Hugging Face `Trainer`: override `compute_loss`
# The model returns logits; the subclass computes the loss from them. `num_items_in_batch` is passed by recent
# `transformers` versions for gradient accumulation; `reduction="sum"` divided by it keeps the loss exact there.

# %% tags=["hide-output", "nbval-ignore-output"]
from transformers import PrinterCallback, Trainer, TrainingArguments


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, pixel_values, labels=None):
        return {"logits": self.net(pixel_values)}


class SoftgradTrainer(Trainer):
    def __init__(self, *args, loss_fn, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        per_sample = self.loss_fn.per_sample(outputs["logits"], labels)  # (N,), ignored labels give 0
        if num_items_in_batch is None:
            loss = self.loss_fn.reduce(per_sample, labels)
        else:  # the sum over this micro-batch, divided by the labels in the whole accumulated batch
            loss = per_sample.sum() / num_items_in_batch
        return (loss, outputs) if return_outputs else loss


train_set = [{"pixel_values": x, "labels": int(y)} for x, y in zip(X_train, Y_train)]
with tempfile.TemporaryDirectory() as out_dir:
    args = TrainingArguments(output_dir=out_dir, max_steps=STEPS, per_device_train_batch_size=64, learning_rate=0.3,
                             lr_scheduler_type="constant", optim="sgd", use_cpu=True, seed=SEED, data_seed=SEED,
                             report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True)
    torch.manual_seed(SEED)
    model = DigitsMLP()
    trainer = SoftgradTrainer(model=model, args=args, train_dataset=train_set, loss_fn=make_loss("sgt", alpha=0.5))
    trainer.remove_callback(PrinterCallback)  # its end-of-training summary holds wall-clock times
    result = trainer.train()
model.eval()
print(f"transformers.Trainer with SGT α=0.5: mean training loss {result.training_loss:.2f}; "
      f"test accuracy {accuracy(model, x=X_test):.2f}")
trained["transformers.Trainer, SGT"] = (None, result.training_loss, accuracy(model, x=X_test))

# %% [markdown]
# ## 4. AS-Softmax with AS-Speed
# AS-Softmax gives exactly zero loss (and gradient) to samples whose target beats every rival by more than δ.
# AS-Speed (Lv et al. 2025) counts them at the start of each accumulation window and accumulates
# k = round(λ·N / (N − zeros)) micro-batches per optimizer step, growing k by at most one per window and never
# shrinking it (`softgrad.schedules.as_speed_next_k`, the official README's rule). The count uses
# `softgrad.losses.zero_loss_mask`, the one definition the trainer uses too.

# %% tags=["hide-output", "nbval-ignore-output"]
from softgrad.losses import as_softmax, zero_loss_mask
from softgrad.schedules import as_speed_next_k

torch.manual_seed(SEED)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
g = torch.Generator().manual_seed(SEED)
k, remaining, opt_steps, ks = 1, 0, 0, []
for step in range(STEPS):
    idx = torch.randint(0, len(X_train), (64,), generator=g)
    y = Y_train[idx]
    per = as_softmax(model(X_train[idx]), y, delta=0.3)
    if remaining == 0:  # first micro-batch of a window: choose its length
        k = as_speed_next_k(len(y), int(zero_loss_mask(per, y).sum()), k, lam=1.0, k_max=4)
        remaining = k
    (per.mean() / k).backward()  # each micro-batch contributes 1/k of the window's mean
    remaining -= 1
    if remaining == 0:
        opt.step()
        opt.zero_grad()
        opt_steps += 1
    ks.append(k)
print(f"AS-Softmax δ=0.3 with AS-Speed: {STEPS} micro-batches in {opt_steps} optimizer steps "
      f"(k grew {ks[0]} → {ks[-1]}); test accuracy {accuracy(model):.2f}")
trained["AS-Softmax + AS-Speed"] = (None, None, accuracy(model))
as_speed_ok = opt_steps < STEPS and ks == sorted(ks) and 1 <= ks[0] and ks[-1] <= 4

# %% [markdown]
# The printed losses and accuracies above move in their second decimal with the CPU's SIMD kernels and thread
# count (chaotic amplification of rounding over 60 steps; `python -m softgrad.goldens` measures it: up to
# 0.03 in loss and 0.02 in accuracy). What does not move is that every loss trains:

# %% tags=["hide-input", "hide-output"]
from softgrad.goldens import trained_checks

trained_checks(trained, chance=0.1, margin=0.5, initial_loss=float(torch.log(torch.tensor(10.0))))
print(f"AS-Speed accumulated (fewer optimizer steps than micro-batches, k never shrank, 1 ≤ k ≤ 4): {as_speed_ok}")

# %% [markdown]
# ## 5. Ties and class-probability targets: the rules, next to the authors'
#
# **Ties.** Sparse-softmax keeps the k largest logits. Its authors take them with TensorFlow's `top_k`
# (bojone/SPACES, `compute_seq2seq_loss`), which keeps the lower class index among equal logits; `torch.topk`
# leaves that order unspecified (on one CPU it keeps indices 8, 6 and 7 of ten zeros, and CUDA may keep others).
# The loss value is the same either way; the gradient is not, wherever logits tie at the k-th place, which is
# common in bf16 and at a zero-initialised head. softgrad keeps the authors' rule on every device and dtype
# (`softgrad.losses.sparse.top_k`; with `keep_target=True` too). The other methods have no rank to break:
#
# | method | selection | tie rule (softgrad = the authors') |
# |---|---|---|
# | Sparse-softmax | the k largest logits | lower class index kept (`tf.math.top_k`) |
# | AS-Softmax | keep class i iff p_t − p_i ≤ δ (`as_sm.py`) | a threshold, not a rank: a rival tied with the target, or exactly δ below it, is kept at every δ |
# | sparsemax, 1.5-entmax | a projection | unique: ties need no rule |
# | CE, temperature, gradient decay, SGT, Noisy Softmax | none | — |
#
# The smallest case: ten equal logits, target 0, k = 3. The authors keep classes 0, 1 and 2, the target among them:

# %% tags=["hide-output"]
from softgrad.losses import sparse_softmax

z = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
loss = sparse_softmax(z, torch.tensor([0]), k=3)
loss.backward()
print(f"loss {loss.item():.6f} (log 3 = {float(torch.log(torch.tensor(3.0))):.6f}); "
      f"gradient {[round(v, 4) for v in z.grad[0].tolist()]}")

# %% [markdown]
# **Class-probability targets** (timm's Mixup and CutMix, distillation) are read as `nn.CrossEntropyLoss`
# reads them: `weight` multiplies each class's term, `label_smoothing` mixes the target with the uniform
# distribution, and `'mean'` divides by the number of samples. Where a paper defines a loss for a distribution,
# softgrad uses it; where it defines one for a target class only, softgrad uses its expectation under the target
# distribution, which is the mixup criterion λ·L(z, a) + (1 − λ)·L(z, b) and, for CE, PyTorch's own definition:
#
# | method | loss for a target distribution q |
# |---|---|
# | CE | PyTorch's: −Σ_c w_c q_c log p_c |
# | temperature | CE(βz, q) |
# | SGT | forward CE(z, q), backward softmax(αz) − q (the paper's p′ − q) |
# | gradient decay, Sparse-softmax | Σ_c w_c q_c L(z, c), the expectation of the one-class loss |
# | sparsemax, 1.5-entmax | the papers' Fenchel–Young loss Ω(p) − Ω(q) + (p − q)·z |
# | AS-Softmax, Noisy Softmax | refused with the reason: the mask, and the noise, are defined by one target class |
#
# A one-hot q gives the index target's loss and gradient for every method that takes a distribution (the
# check, code and output, is collapsed below):

# %% tags=["hide-input", "hide-output"]
import torch.nn.functional as F

from softgrad.losses import LOSSES

gz = torch.Generator().manual_seed(SEED)
z = torch.randn(32, 10, generator=gz, dtype=torch.float64) * 3
y = torch.randint(0, 10, (32,), generator=gz)
same, refused = {}, {}
for name in LOSSES:
    fn = make_loss(name, reduction="none")
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    try:
        a = fn(za, F.one_hot(y, 10).double())
    except ValueError as e:
        refused[name] = str(e)
        continue
    b = fn(zb, y)
    a.sum().backward()
    b.sum().backward()
    same[name] = torch.allclose(a, b, rtol=1e-12, atol=1e-12) and torch.allclose(za.grad, zb.grad, rtol=1e-12, atol=1e-12)
print(f"one-hot class probabilities give the index target's loss and gradient: {same}")
for name, reason in refused.items():
    print(f"refused, {name}: {reason}")
