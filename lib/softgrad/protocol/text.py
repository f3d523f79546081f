"""The protocol's findings in words: the bound an interval excludes (:func:`bound_text`), an interval in its
display unit (:func:`ci_text`), the bottom line read off the across-task verdicts (:func:`bottom_line`), and the
methods' short display names (:data:`SHORT`), where a verdict changes with the model or the optimiser
(:func:`differences`), and how many verdicts each task leaves inconclusive (:func:`decisiveness`).

What a reader sees instead of the internal keys: the tasks' display labels built from their configs
(:func:`task_labels`: "MNIST-1D CNN, AdamW" for ``mnist1d_cnn_adamw``) and the searched parameters' display
names (:data:`PARAM_LABELS`: "β" for ``beta``, "effective step η_eff" for ``lr_eff``). The keys stay the keys of
every lookup; only what is printed or drawn changes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .. import stats as S
from ..common import POINTS, interval_text, number

__all__ = ["SHORT", "PARAM_LABELS", "DATASET_LABELS", "MODEL_LABELS", "task_labels", "setting_text", "param_text",
           "bound_text", "ci_text", "bottom_line", "differences", "decisiveness", "practice_table", "practice_text",
           "search_text", "optimiser_text", "time_ratios"]


def bound_text(row, scale: float = 1.0, unit: str = "") -> str:
    """The bound an interval excludes, in words, from its improvement side: "rules out a gain above +0.62
    pts" (a higher-is-better metric) or "rules out a reduction beyond −0.031" (NLL, ECE); when the whole
    interval lies on the losing side, "rules out any gain". ``row`` has ``lo``, ``hi``, ``higher_is_better``.
    Numbers as :func:`softgrad.common.number` prints them."""
    lo, hi = number(row.lo * scale, sign=True), number(row.hi * scale, sign=True)
    if row.higher_is_better:
        return f"rules out a gain above {hi}{unit}" if row.hi > 0 else f"rules out any gain (Δ < {hi}{unit})"
    return (f"rules out a reduction beyond {lo}{unit}" if row.lo < 0
            else f"rules out any reduction (Δ > {lo}{unit})")


SHORT = {"ce": "CE", "temperature": "temperature", "gradient_decay": "gradient decay", "noisy": "Noisy Softmax", "sgt": "SGT",
         "as_softmax": "AS-Softmax"}

#: a searched (or trained) parameter's display name: the one mapping every table, text and figure of chapter 06
#: prints a setting or a searched dimension with (Noisy Softmax's noise scale is its paper's α)
PARAM_LABELS = {"lr": "η", "lr_eff": "effective step η_eff", "beta": "β", "alpha": "α", "noise_alpha": "α",
                "delta": "δ", "weight_decay": "weight decay"}

#: a task's data set and model in words (:func:`task_labels`)
DATASET_LABELS = {"mnist10k": "MNIST", "mnist": "MNIST", "mnist1d": "MNIST-1D", "digits": "digits",
                  "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN",
                  "synthetic": "synthetic", "teacher": "teacher"}
MODEL_LABELS = {"mlp": "MLP", "cnn1d": "CNN", "mlp1d": "MLP", "lenet5": "LeNet-5", "vgg_small": "small VGG",
                "resnet18": "ResNet-18", "resnet20": "ResNet-20"}
_OPTIMIZER_LABELS = {"sgd": "SGD", "adamw": "AdamW"}


def _task_label(cfg) -> str:
    """One task's label from its config: "MNIST-1D CNN, AdamW", "CIFAR-10 ResNet-18, SGD, 40% label noise"."""
    out = (f"{DATASET_LABELS.get(cfg.dataset, cfg.dataset)} {MODEL_LABELS.get(cfg.model, cfg.model)}, "
           f"{_OPTIMIZER_LABELS.get(cfg.optimizer, cfg.optimizer)}")
    return out + (f", {cfg.label_noise:.0%} label noise" if cfg.label_noise > 0 else "")


def task_labels(task_cfgs: dict) -> dict[str, str]:
    """Task key -> the label a reader sees (tables, text, figures), from the task's config
    (``task_cfgs``: what :func:`softgrad.protocol.tasks` returns, task -> :class:`~softgrad.config.Config`): data
    set, model, optimiser and label noise, "MNIST MLP, SGD", "MNIST-1D CNN, AdamW", "digits MLP, SGD, 30% label
    noise". Tasks whose configs give the same label (they differ in something else: epochs, width) keep it with
    their key in parentheses, "MNIST MLP, SGD (mnist_wide)", so that no two tasks read alike."""
    labels = {t: _task_label(c) for t, c in task_cfgs.items()}
    seen: dict[str, int] = {}
    for v in labels.values():
        seen[v] = seen.get(v, 0) + 1
    return {t: f"{v} ({t})" if seen[v] > 1 else v for t, v in labels.items()}


def param_text(text: str) -> str:
    """Text that names parameters by their keys (:func:`softgrad.protocol.search_table`'s coupling "lr = lr_eff ·
    beta^-2", a limit's "alpha = 1 is CE") with each key replaced by its symbol (:data:`PARAM_LABELS`; the
    effective step as η_eff alone): "η = η_eff · β^−2", "α = 1 is CE"."""
    sym = {**PARAM_LABELS, "lr_eff": "η_eff"}  # inside a formula, the symbol alone
    keys = "|".join(sorted(sym, key=len, reverse=True))
    return re.sub(rf"\b({keys})\b", lambda m: sym[m.group(1)], text).replace("^-", "^−")


def setting_text(s: dict, drop=("lr_eff", "weight_decay")) -> str:
    """A trial's setting in a few words, each parameter by its display name (:data:`PARAM_LABELS`): "η 0.05,
    β 0.3" (η the trained learning rate); the keys in ``drop`` left out (by default the effective step, which
    follows from η and the knob, and the weight decay, which the task fixes)."""
    return ", ".join(f"{PARAM_LABELS.get(k, k)} {v:.3g}" for k, v in s.items() if k not in drop)


def ci_text(r, metric: str | None = None) -> str:
    """"+0.12 [−0.26, +0.41]" in the metric's display unit (points for accuracy and ECE):
    :func:`softgrad.common.interval_text` of a comparison row."""
    get = (lambda k: r[k]) if isinstance(r, pd.Series) else (lambda k: getattr(r, k))  # noqa: E731 (Series.diff)
    return interval_text(get("diff"), get("lo"), get("hi"), metric or get("metric"))


def _names(ms) -> str:
    ms = [SHORT.get(m, m) for m in ms]
    return ms[0] if len(ms) == 1 else ", ".join(ms[:-1]) + " and " + ms[-1]


def bottom_line(R: ProtocolResult) -> str:
    """The finding in two or three quotable sentences (Markdown), read off the across-task verdicts: what
    beat CE on test accuracy and by how much, what was ruled out (the bound each interval excludes), what
    stayed open, and calibration before and after temperature scaling."""
    a = R.aggregate.set_index(["metric", "method"])
    acc = a.loc["acc"]
    by = {v: list(acc.index[acc.verdict == v]) for v in S.VERDICTS}
    pts = lambda m, k="acc": ci_text(a.loc[(k, m)], k)  # noqa: E731
    out = []
    if by[S.VERDICTS[0]]:
        out.append("**" + "; ".join(f"{SHORT.get(m, m)} beat tuned cross-entropy on test accuracy by {pts(m)} points"
                                    for m in by[S.VERDICTS[0]]) + "** (mean over tasks, interval in brackets).")
    else:
        out.append("**No loss beat tuned cross-entropy on test accuracy.**")
    said = []
    if by[S.VERDICTS[2]]:
        said.append(f"{_names(by[S.VERDICTS[2]])} showed no detectable effect (each interval rules out a gain above "
                    + ", ".join(number(100 * acc.loc[m].hi, sign=True) for m in by[S.VERDICTS[2]]) + " points)")
    if by[S.VERDICTS[1]]:
        said.append(f"{_names(by[S.VERDICTS[1]])} lost to it (" + ", ".join(pts(m) for m in by[S.VERDICTS[1]]) + " points)")
    if by[S.VERDICTS[3]]:
        said.append(f"{_names(by[S.VERDICTS[3]])} stayed inconclusive (gains up to "
                    + ", ".join(number(100 * acc.loc[m].hi, sign=True) for m in by[S.VERDICTS[3]])
                    + " points are not ruled out, nor losses down to "
                    + ", ".join(number(100 * acc.loc[m].lo, sign=True) for m in by[S.VERDICTS[3]]) + ")")
    if said:
        out.append(said[0][0].upper() + "; ".join(said)[1:] + ".")
    ece = a.loc["ece"]
    worse, better = list(ece.index[ece.verdict == S.VERDICTS[1]]), list(ece.index[ece.verdict == S.VERDICTS[0]])
    cal = []
    if worse:
        cal.append("worse for " + ", ".join(f"{SHORT.get(m, m)} ({pts(m, 'ece')} points)" for m in worse))
    if better:
        cal.append("better for " + ", ".join(f"{SHORT.get(m, m)} ({pts(m, 'ece')} points)" for m in better))
    ts = a.loc["ece_ts"]
    ts_by = {v: list(ts.index[ts.verdict == v]) for v in S.VERDICTS}
    after = []
    for v, word in ((S.VERDICTS[0], "better"), (S.VERDICTS[1], "worse"), (S.VERDICTS[2], "within the margin of CE's"),
                    (S.VERDICTS[3], "undecided")):
        if ts_by[v]:
            after.append(f"{word} for {_names(ts_by[v])}")
    out.append("Before temperature scaling, calibration (ECE) was " + ("; ".join(cal) if cal else
               "no different from CE's beyond the margin for any method with a definite verdict")
               + "; after it, " + "; ".join(after) + ".")
    return " ".join(out)


def _task_kind(cfg) -> dict:
    """What a task's verdicts may depend on, in words: its model and its optimiser."""
    model = {"mlp": "the MLP", "cnn1d": "the CNN", "mlp1d": "the MNIST-1D MLP"}.get(cfg.model, cfg.model)
    return {"model": model, "optimizer": "AdamW" if cfg.optimizer == "adamw" else "SGD"}


def differences(R, task_cfgs: dict, metric: str = "acc") -> tuple[list[str], list[tuple[str, str, str]]]:
    """Where a method's verdict on ``metric`` changes with the optimiser (between tasks on the same data and model
    that differ only in optimiser) or with the model (between tasks on different models trained with the same
    optimiser and without label noise): one Markdown sentence per change, "SGT: *reproduced* with AdamW
    (+0.61 [+0.20, +1.02] points) but *no detectable effect* with SGD (…) on the CNN". ``task_cfgs``: task ->
    its Config (:func:`softgrad.protocol.tasks`). Returns the sentences and the pairs of tasks compared
    (``(task_a, task_b, 'optimizer' | 'model')``): no sentence over some pairs means the verdicts hold across
    those models and optimisers (a finding too, said by the caller); no pair, that the pool cannot say."""
    c = R.comparisons[R.comparisons.metric == metric].set_index(["task", "method"])
    kinds = {t: _task_kind(cfg) for t, cfg in task_cfgs.items()}
    pairs = []
    names = list(task_cfgs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca, cb = task_cfgs[a], task_cfgs[b]
            if ca.label_noise or cb.label_noise:
                continue
            same_data = ca.dataset == cb.dataset and ca.model == cb.model
            if same_data and ca.optimizer != cb.optimizer:
                pairs.append((a, b, "optimizer", f"on {kinds[a]['model']}"))
            elif ca.model != cb.model and ca.optimizer == cb.optimizer:
                pairs.append((a, b, "model", f"with {kinds[a]['optimizer']}"))
    out = []
    for method in dict.fromkeys(c.index.get_level_values("method")):
        for a, b, dim, where in pairs:
            ra, rb = c.loc[(a, method)], c.loc[(b, method)]
            if ra.verdict == rb.verdict:
                continue
            what = lambda t, r: f"*{r.verdict}* {'with' if dim == 'optimizer' else 'on'} {kinds[t][dim]} ({ci_text(r, metric)}{' points' if metric in POINTS else ''})"  # noqa: E731,E501
            out.append(f"{SHORT.get(method, method)}: {what(a, ra)} but {what(b, rb)}, {where}.")
    return out, [(a, b, dim) for a, b, dim, _ in pairs]


def decisiveness(R) -> pd.DataFrame:
    """Per task (and 'all tasks' for the across-task rows): how many of the accuracy comparisons, and of all the
    verdicts (every metric), are *inconclusive at this budget*. Columns: task, acc_inconclusive, acc_verdicts,
    all_inconclusive, all_verdicts."""
    inc = S.VERDICTS[3]
    rows = []
    for task, g in list(R.comparisons.groupby("task", sort=False)) + [("all tasks", R.aggregate)]:
        a = g[g.metric == "acc"]
        rows.append({"task": task, "acc_inconclusive": int((a.verdict == inc).sum()), "acc_verdicts": len(a),
                     "all_inconclusive": int((g.verdict == inc).sum()), "all_verdicts": len(g)})
    return pd.DataFrame(rows)


def practice_table(R, labels: dict | None = None) -> pd.DataFrame:
    """What a practitioner choosing a loss needs from chapter 06, one row per method (CE first), each a mean over
    tasks unless it says otherwise: ``verdict`` and ``delta`` (the across-task accuracy verdict and its interval,
    points), ``kept`` (per task, the setting a T-trial search keeps most often: knob and trained learning
    rate, :func:`setting_text`; each task named by ``labels``, task -> display label as :func:`task_labels`
    gives it, its key where none is given), ``curse`` (the kept setting's own test accuracy minus its
    fresh-seed retrains' mean, points: what a retrain of it loses), ``untuned`` (E_1 − E_T of test accuracy,
    points: what one untuned trial costs against the T-trial search), ``ece_raw`` / ``ece_ts`` (E_T of ECE
    before and after temperature scaling, points) and ``nll_raw`` / ``nll_ts``."""
    from .design import winners

    labels = labels or {}
    c = R.comparisons
    agg = R.aggregate.set_index(["method", "metric"])
    methods = ["ce", *dict.fromkeys(c.method)]
    win = winners(R.pool).set_index(["task", "method"])
    rt = R.retrain.set_index(["task", "method"]) if len(R.retrain) else None
    b = R.budget.set_index(["task", "method", "T"]).test_acc
    tasks = list(dict.fromkeys(c.task))
    rows = []
    for m in methods:
        def level(metric, m=m):
            g = c[c.metric == metric]
            return float((g.drop_duplicates("task").ce_E if m == "ce" else g[g.method == m].method_E).mean())
        row = {"method": m}
        if m == "ce":
            row.update(verdict="the baseline", delta="")
        else:
            a = agg.loc[(m, "acc")]
            row.update(verdict=a.verdict, delta=ci_text(a, "acc"))
        row["kept"] = "; ".join(f"{labels.get(t, t)}: {setting_text(win.loc[(t, m)].setting)}" for t in tasks
                                if (t, m) in win.index)
        row["curse"] = (100 * float(np.mean([rt.loc[(t, m)].curse for t in tasks if (t, m) in rt.index]))
                        if rt is not None else np.nan)
        row["untuned"] = 100 * (float(np.mean([b.loc[(t, m, 1)] for t in tasks])) - level("acc"))
        row.update(ece_raw=100 * level("ece"), ece_ts=100 * level("ece_ts"), nll_raw=level("nll"), nll_ts=level("nll_ts"))
        rows.append(row)
    return pd.DataFrame(rows)


def practice_text(R, flagged=()) -> str:
    """The recommendation in one or two sentences, read off the across-task accuracy verdicts: which loss to use
    at this scale, and which lost to tuned CE. ``flagged``: methods whose search range was cut short on some task
    (:func:`softgrad.protocol.edge_shares`' flags); a loss for them is said to be partly the range's."""
    acc = R.aggregate[R.aggregate.metric == "acc"].set_index("method")
    won = list(acc.index[acc.verdict == S.VERDICTS[0]])
    lost = list(acc.index[acc.verdict == S.VERDICTS[1]])
    if won:
        out = (f"At this scale {_names(won)} beat cross-entropy tuned with the same search budget "
               + "; ".join(f"{SHORT.get(m, m)} by {ci_text(acc.loc[m], 'acc')} points" for m in won)
               + ": use it with the settings below, on the optimiser and model it was found on.")
    else:
        out = ("At this scale no loss beat cross-entropy tuned with the same search budget: use cross-entropy and "
               "spend the budget on its learning rate.")
    if lost:
        s = f"{_names(lost)} lost to it"
        cut = [m for m in lost if m in set(flagged)]
        if cut:
            s += (f" ({_names(cut)}: a search range was cut short on some task, so the loss is partly the range's;"
                  " see chapter 06's edge check)")
        out += " " + s[0].upper() + s[1:] + "."
    return out


def search_text(spec: dict, method: str, labels: dict | None = None, optimizers: dict | None = None) -> str:
    """The search space chapter 06 gave ``method``, in words, from the checked spec: "β 0.01…10; effective
    step η_eff 0.003…1 (MNIST MLP, SGD), …; learning rate 0.001…0.3 (MNIST-1D CNN, AdamW)" (one learning-rate
    range per task where they differ; ``labels``: task -> display label; ``optimizers``: task -> its optimiser,
    since a learning-rate coupling applies on SGD only). So the practitioner page quotes the ranges the
    regeneration used."""
    from .spec import dimensions, lr_coupling

    labels, optimizers = labels or {}, optimizers or {}
    tasks_ = list(spec["tasks"])
    per = {t: dimensions(spec, method, t) for t in tasks_}
    rng = lambda r: f"{number(r[0], sig=3)}…{number(r[1], sig=3)}" + (" (linear)" if r[2] == "linear" else "")  # noqa: E731
    parts = [f"{PARAM_LABELS.get(k, k)} {rng(r)}" for k, r in per[tasks_[0]].items() if k != "lr_eff"]
    coupled = lr_coupling(spec, method) is not None
    groups: dict[str, dict] = {}  # the learning rate's name on a task -> {task: range}
    for t in tasks_:
        name = "effective step η_eff" if coupled and optimizers.get(t, "sgd") == "sgd" else "learning rate"
        groups.setdefault(name, {})[t] = per[t]["lr_eff"]
    for name, lrs in groups.items():
        if len(set(lrs.values())) == 1 and len(groups) == 1:
            parts.append(f"{name} {rng(next(iter(lrs.values())))}")
        else:
            parts.append(f"{name} " + ", ".join(f"{rng(r)} ({labels.get(t, t)})" for t, r in lrs.items()))
    return "; ".join(parts)


def optimiser_text(R, task_cfgs: dict, labels: dict | None = None) -> str:
    """Which optimiser served CE better where the pool has the same data and model under two optimisers: CE's
    E_T of test accuracy on each, in %, with the paired difference's interval (trial indices and test examples
    resampled, as every comparison; each optimiser's learning rate searched with the same budget). Empty where
    no such pair exists. ``task_cfgs``: task -> Config; ``labels``: task -> display label."""
    from .resample import example_resamples, index_resamples, replicate_values

    labels = labels or {}
    names = list(task_cfgs)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
             if task_cfgs[a].dataset == task_cfgs[b].dataset and task_cfgs[a].model == task_cfgs[b].model
             and task_cfgs[a].optimizer != task_cfgs[b].optimizer and not (task_cfgs[a].label_noise or task_cfgs[b].label_noise)]
    if not pairs:
        return ""
    spec, pool, T = R.spec, R.pool, R.spec["select"]
    out = []
    for a, b in pairs:
        rows = {t: pool[(pool.task == t) & (pool.method == "ce")].sort_values("trial") for t in (a, b)}
        n = min(len(r) for r in rows.values())
        boot = index_resamples(spec, [a, b], n)
        exs = example_resamples(spec, pool[pool.method == "ce"], [a, b])
        est = {t: float(S.expected_selected(r.val_acc.to_numpy(float)[:n], r.test_acc.to_numpy(float)[:n], T))
               for t, r in rows.items()}
        rep = {t: S.expected_selected(*replicate_values(rows[t].iloc[:n], "test_acc", boot[t], exs[t]), T)
               for t in (a, b)}
        # the two tasks' test sets are generated apart, so their resamples are independent: the difference's
        # replicates pair replicate b of one with replicate b of the other
        lo, hi = S.percentile_interval(rep[b] - rep[a], spec["confidence"])
        oa, ob = (("AdamW" if task_cfgs[t].optimizer == "adamw" else "SGD") for t in (a, b))
        out.append(f"on {labels.get(a, a).split(',')[0]}, CE reached {number(100 * est[a])}% with {oa} and "
                   f"{number(100 * est[b])}% with {ob} ({ob} − {oa}: "
                   f"{interval_text(est[b] - est[a], lo, hi, 'acc')} points), each with its learning rate "
                   f"searched over T = {T} trials")
    return "; ".join(out)


def time_ratios(R) -> pd.Series:
    """method -> median over tasks of its median training time relative to CE's on the same task (the whole
    training run, on the engine the pool used: loss, model, optimiser and data together)."""
    p = R.pool[R.pool.method.isin(list(R.spec["methods"]))]  # the compared methods (no gate or retrain rows)
    tt = p.groupby(["task", "method"], sort=False).train_time.median()
    rel = tt / tt.xs("ce", level="method").reindex(tt.index.get_level_values("task")).to_numpy()
    return rel.groupby(level="method", sort=False).median()
