"""CE under the MNIST-1D authors' training setup, beside their reference accuracies: a check of the trainer
before it judges losses on MNIST-1D (chapter 08).

Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D" (ICML 2024; repository greydanus/mnist1d) report
test accuracies on their frozen set (4,000 train, 1,000 test): logistic regression 32%, MLP 68%, CNN 94%,
GRU 91% (a human expert 96%). They train (``notebooks/train.py``, ``mnist1d-classification.ipynb``) with
cross-entropy, Adam at learning rate 1e-2, no weight decay, batch 100, 6,000 steps at a constant rate, PyTorch's
default initialisation; the MLP is ``MLPBase`` (hidden 100), the CNN ``ConvBase`` (25 channels): here ``mlp1d``
and ``cnn1d`` (:mod:`softgrad.models`).

:data:`AUTHORS_SETUP` is that setup as a Config diff: ``optimizer: adamw`` with ``weight_decay: 0`` (Adam),
``lr_schedule: constant``, ``batch_size: 100`` and 150 epochs (6,000 steps of 40 batches). What differs: the
trainer reshuffles the batches every epoch (theirs cycle through the training set in one fixed order), and
their loop takes 6,001 steps (``range(total_steps + 1)``); both read the test accuracy after the last step.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["AUTHORS_ACCURACY", "AUTHORS_OTHER", "AUTHORS_STEPS", "AUTHORS_SETUP", "FROZEN_SET", "authors_epochs",
           "reference_table"]

#: The authors' test accuracy on the frozen set, per model of :mod:`softgrad.models` (Greydanus & Kobak 2024).
AUTHORS_ACCURACY = {"mlp1d": 0.68, "cnn1d": 0.94}
#: Their other reference numbers (models this project does not build).
AUTHORS_OTHER = {"logistic regression": 0.32, "GRU": 0.91, "human expert": 0.96}
AUTHORS_STEPS = 6000
AUTHORS_BATCH = 100


def authors_epochs(n_train: int = 4000, steps: int = AUTHORS_STEPS, batch_size: int = AUTHORS_BATCH) -> int:
    """Epochs giving the authors' ``steps`` optimizer steps (``n_train / batch_size`` steps an epoch; 150 for the
    frozen set's 4,000 training samples)."""
    return math.ceil(steps / math.ceil(n_train / batch_size))


#: The authors' training as a diff over :class:`~softgrad.config.Config` (the model is swept).
AUTHORS_SETUP = {"dataset": "mnist1d", "loss": "ce", "optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0,
                 "lr_schedule": "constant", "lr_warmup_epochs": 0.0, "batch_size": AUTHORS_BATCH,
                 "epochs": authors_epochs(), "val_fraction": 0.0, "label_noise": 0.0, "head_bias": True,
                 "head_init_scale": 1.0, "noise_alpha": 0.0}

#: The frozen set's generator settings (:data:`softgrad.data.MNIST1D_DEFAULTS` as Config fields).
FROZEN_SET = {"mnist1d_samples": 5000, "mnist1d_test_samples": 1000, "mnist1d_seed": 42}


def reference_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model of a results frame (:func:`softgrad.runs.run_params`): runs, epochs and optimizer steps per run,
    the final test accuracy's mean, sample std (``ddof=1``; 0 for one run), min and max over seeds, the authors'
    accuracy (:data:`AUTHORS_ACCURACY`; NaN for other models), mean − authors, the mean training seconds per run
    (``train_time``: optimisation only, evaluation excluded), and whether the runs used :data:`AUTHORS_SETUP`
    (``authors_setup``: every field equal, on the frozen set)."""
    f = df[df["final"]]
    rows = []
    for model, sub in f.groupby("model", sort=False):
        acc = sub["test_acc"].astype(float)
        same = all(k in sub and (sub[k] == v).all() for k, v in {**AUTHORS_SETUP, **FROZEN_SET}.items())
        ref = AUTHORS_ACCURACY.get(model, math.nan)
        rows.append({"model": model, "runs": len(sub), "epochs": int(sub["epochs"].iloc[0]),
                     "steps": int(sub["total_opt_steps"].iloc[0]), "test_acc_mean": acc.mean(),
                     "test_acc_std": acc.std(ddof=1) if len(acc) > 1 else 0.0, "test_acc_min": acc.min(),
                     "test_acc_max": acc.max(), "authors": ref, "difference": acc.mean() - ref,
                     "train_seconds": float(sub["train_time"].mean()), "authors_setup": bool(same)})
    return pd.DataFrame(rows)
