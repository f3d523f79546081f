"""The descriptive claims of chapters 01–05: each estimated with a bootstrap interval over seeds and judged by
a rule written down here, before any number is seen.

A *descriptive* claim is a statement about a quantity measured on a chapter's sweep: a slope, a correlation, a
ratio, a difference of accuracies. (Claims that a method *improves on CE* are judged by chapter 06's
protocol instead; identities are checked exactly in float64.) Each claim has

- a **statistic**: a function of the seed means of a chapter's runs (a :class:`SeedTable` resampled);
- an **interval**: the percentile bootstrap over seeds (seed ``s`` fixes the initialisation and data order of
  every run of the chapter, so all runs of one seed are resampled together and comparisons stay paired);
- a **rule** (:class:`Rule`, one of two kinds):

  * ``direction``: the claim predicts the statistic lies on one side of a null value (a ratio above 1, a
    correlation below 0). *no detectable effect*: the whole interval lies within ``null ± margin`` (an effect
    smaller than the margin is not the effect claimed, even where the interval excludes the null);
    otherwise *reproduced*: the interval excludes the null on the claimed side; *reversed*: on the other
    side; otherwise *inconclusive at this budget*. The same four verdicts, with the same meaning and the same
    order, as chapter 06 (:func:`softgrad.stats.interval_verdict`).
  * ``value``: the claim predicts a value (a slope of −2), with a tolerance band written beside it.
    *reproduced*: the interval lies inside the band; *reversed*, *no detectable effect*: as above, the null
    being "no dependence" (slope 0); *partly*: the interval excludes the null on the predicted side but lies
    wholly outside the band (the sign holds, the size does not); otherwise *inconclusive at this budget*.
    A band that contains the null is a claim of a *weak* effect ("depends only weakly on"): *reproduced*
    inside the band, *reversed* wholly outside it (a strong effect), otherwise *inconclusive*.

- a **settling check**, for claims read at the end of training: the same statistic read at the middle epoch,
  and the bootstrap interval of its change up to the last epoch. The claim has *settled* when that interval
  lies within ± the larger of the margin and a tenth of the estimate's distance from the null
  (:func:`settled`); a claim that has not settled is *inconclusive at this budget* whatever its
  interval says (the quantity is still moving, so the budget decides it). Claims about early training (the
  Temperature paper's P1–P5, the curriculum) say which epochs or steps they read instead.

With 5 seeds a percentile bootstrap interval is narrower than its nominal 95 % (the bootstrap cannot see
variation the five seeds did not show); the book states this beside the claims table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .common import INCONCLUSIVE, NO_EFFECT, NOT_TESTABLE, PARTLY, REPRODUCED, REVERSED, interval_text, number
from .stats import percentile_interval

__all__ = ["Rule", "Claim", "CLAIMS", "SeedTable", "seed_table", "bootstrap", "estimate", "judge", "at_epoch",
           "claims_table", "report", "publish", "settled", "PARTLY", "NOT_TESTABLE"]



@dataclass(frozen=True)
class Rule:
    """How a claim's interval becomes a verdict (see the module docstring)."""

    kind: str  # "direction" | "value"
    null: float  # the statistic's value when the claimed effect is absent
    margin: float  # equivalence margin around the null; also the settling tolerance
    side: int = 0  # direction claims: +1 the claim predicts > null, -1 < null
    band: tuple[float, float] | None = None  # value claims: the predicted range

    def __post_init__(self):
        if self.kind == "direction" and self.side not in (-1, 1):
            raise ValueError("a direction rule needs side = +1 or -1")
        if self.kind == "value" and (self.band is None or self.band[0] >= self.band[1]):
            raise ValueError("a value rule needs a band (lo, hi) with lo < hi")
        if self.kind not in ("direction", "value"):
            raise ValueError(f"kind must be 'direction' or 'value', got {self.kind!r}")

    def describe(self, unit: str = "", scale: float = 1.0) -> str:
        f = lambda v: f"{number(v * scale, sig=3)}{unit}"  # noqa: E731
        eq = f"no effect if within {f(self.null)} ± {f(self.margin)}"
        if self.kind == "direction":
            return f"interval {'>' if self.side > 0 else '<'} {f(self.null)}; {eq}"
        return f"interval inside [{f(self.band[0])}, {f(self.band[1])}]; {eq}"

    def short(self, unit: str = "", scale: float = 1.0) -> str:
        """The rule in a table cell (HTML): its kind's letter (D direction, V value; chapter 07 states each kind
        once), the claimed side or band, and the margin on a second line: "D &gt; 0<br>±1 pts"."""
        f = lambda v: number(v * scale, sig=3)  # noqa: E731 (a true minus sign: a line never breaks inside a number)
        u = unit.strip()
        m = f"±{f(self.margin)}{' ' + u if u else ''}"
        if self.kind == "direction":
            return f"D {'&gt;' if self.side > 0 else '&lt;'} {f(self.null)}<br>{m}"
        return f"V [{f(self.band[0])}, {f(self.band[1])}]<br>{m}"


@dataclass(frozen=True)
class Claim:
    """One descriptive claim: what the paper says, the statistic this book reads, and its rule."""

    id: str
    paper: str
    text: str
    paper_number: str  # what the paper predicts or reports
    statistic: str  # what this book measures, in words
    rule: Rule
    chapter: str  # notebook stem holding the evidence
    evidence: str  # figure name in that chapter
    reads: str = "end"  # "end" (settling check applies) or the early window it reads, in words
    unit: str = ""
    scale: float = 1.0  # display scale (100 for accuracy differences in points)


_PTS = dict(unit=" pts", scale=100.0)
CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("t_beta_vs_init", "Temperature", "generalization depends strongly on β, weakly on ‖βz₀‖",
          "qualitative", "range of test accuracy over β (each β at its best η) minus the largest range over ‖βz₀‖ "
          "at fixed β (runs that trained)", Rule("direction", 0.0, 0.01, side=+1), "01_temperature",
          "fig-01-init-scale", **_PTS),
    Claim("t_p1", "Temperature", "P1: with η = η̃/β² and ‖βz₀‖ fixed, early loss curves collapse (reconstructed)",
          "collapse", "largest spread across β of the seed-mean training-loss curves with the scaling, divided "
          "by the same spread without it", Rule("direction", 1.0, 0.1, side=-1), "01_temperature",
          "fig-01-p1-collapse", reads="every epoch of the P1 runs (early learning)"),
    Claim("t_p2", "Temperature", "P2: learning time ∝ 1/(ηβ²) at small ‖βz₀‖ (reconstructed)", "slope 1",
          "log-log slope against 1/(ηβ²) of the full-batch GD steps until the training loss falls to 0.9 ln C",
          Rule("value", 0.0, 0.1, band=(0.7, 1.3)), "01_temperature", "fig-01-flow",
          reads="full-batch GD, the steps until the threshold"),
    Claim("t_p3", "Temperature", "P3: weights travel ∝ 1⁠/⁠β (β·‖θ−θ₀‖ about constant; reconstructed)", "constant",
          "CV over β of β·‖θ−θ₀‖ divided by the CV of ‖θ−θ₀‖ (P1 runs)", Rule("direction", 1.0, 0.1, side=-1),
          "01_temperature", "fig-01-p1-collapse", reads="the last epoch of the P1 runs (early learning)"),
    Claim("t_p4", "Temperature", "P4: largest stable learning rate ∝ 1⁠/⁠β² (reconstructed)", "slope −2",
          "log-log slope against β of the largest η of a 2^½ grid at which full-batch GD descends monotonically",
          Rule("value", 0.0, 0.1, band=(-2.5, -1.5)), "01_temperature", "fig-01-flow",
          reads="full-batch GD, the first steps"),
    Claim("t_p5", "Temperature", "P5: at large ‖βz₀‖ the softmax saturates and the loss first falls linearly "
          "(reconstructed)", "linear phase at large ‖βz₀‖", "log-log slope against ‖βz₀‖ of the length of the "
          "linear phase (steps until the per-step loss decrease first halves), where the initial loss exceeds 2 ln C", Rule("direction", 0.0, 0.1, side=+1),
          "01_temperature", "fig-01-flow", reads="full-batch GD, the first steps"),
    Claim("t_p5_time", "Temperature", "P5: at large ‖βz₀‖ the time to learn depends only weakly on ‖βz₀‖ "
          "(reconstructed)", "weak dependence", "log-log slope against ‖βz₀‖ of the full-batch GD steps until the "
          "training accuracy reaches 0.5, where the initial loss exceeds 2 ln C (saturated)",
          Rule("value", 0.0, 0.1, band=(-0.3, 0.3)), "01_temperature", "fig-01-flow",
          reads="full-batch GD, the steps until the threshold"),
    Claim("gd_calibration", "Gradient decay", "larger β improves calibration (ECE)", "ECE falls as β rises",
          "correlation of log β with the seed-mean raw test ECE over the β sweep, at one learning rate (a trend across "
          "β; tuned gradient decay against tuned CE is chapter 06's question)", Rule("direction", 0.0, 0.2, side=-1),
          "02_gradient_decay", "fig-02-beta-sweep"),
    Claim("gd_curriculum", "Gradient decay", "small β acts as a curriculum (easy samples first)", "qualitative",
          "easy − hard tercile gap in training p_t after epoch 1, smallest β minus largest β (terciles from the "
          "same seed's CE model)", Rule("direction", 0.0, 0.01, side=+1), "02_gradient_decay", "fig-02-curriculum",
          reads="epoch 1 (the curriculum is a claim about early training)"),
    Claim("gd_warmup", "Gradient decay", "β warm-up beats a fixed β", "qualitative",
          "test accuracy of the best warm-up minus the best fixed endpoint β (the choices inside the bootstrap)",
          Rule("direction", 0.0, 0.005, side=+1), "02_gradient_decay", "fig-02-warmup", **_PTS),
    Claim("ns_large_alpha", "Noisy Softmax", "large α hurts", "qualitative",
          "test accuracy of softmax minus that of the largest α", Rule("direction", 0.0, 0.005, side=+1),
          "03_noisy_softmax", "fig-03-alpha-sweep", **_PTS),
    Claim("ns_saturation", "Noisy Softmax", "noise postpones saturation (larger gradients late in training)",
          "qualitative", "gradient norm in the last epoch, Noisy Softmax divided by softmax",
          Rule("direction", 1.0, 0.05, side=+1), "03_noisy_softmax", "fig-03-saturation",
          reads="the last epoch (the claim is about late training)"),
    Claim("ns_negative", "Noisy Softmax", "negative (one-sided) noise is worse than softmax", "qualitative",
          "test accuracy of softmax minus that of negative annealed noise", Rule("direction", 0.0, 0.005, side=+1),
          "03_noisy_softmax", "fig-03-ablation", **_PTS),
    Claim("sgt_ce", "SGT", "final training CE rises as α falls",
          "ImageNet ResNet-50: final training CE 0.852 (α = 1) → 2.360 (α = 0.05)",
          "correlation of log α with the seed-mean final training CE (no label smoothing)",
          Rule("direction", 0.0, 0.2, side=-1), "04_gradient_tampering", "fig-04-alpha-sweep"),
    Claim("sgt_norm", "SGT", "the logit norm grows as α falls", "grows as α falls (no number given)",
          "correlation of log α with the seed-mean final logit norm (no label smoothing)",
          Rule("direction", 0.0, 0.2, side=-1), "04_gradient_tampering", "fig-04-alpha-sweep"),
    # AS-Speed, judged on the paper's comparison: "about 1.2x training speedup comparing with the standard softmax
    # while maintaining classification effectiveness" (abstract). Accumulation changes the optimizer steps, not
    # the passes over the data, so the comparison is equal epochs: the same training run, timed, and its final
    # quality. (Equal steps would give AS-Speed twice the data; equal wall-clock is not the paper's quantity.)
    Claim("as_speed_time", "AS-Speed", "≈1.2× training speed-up over softmax (wall clock, the same epochs)",
          "≈1.2× (abstract)", "CE's wall-clock training time divided by AS-Speed's, both trained for the same "
          "epochs (per seed, this machine; evaluation not timed)", Rule("direction", 1.0, 0.05, side=+1),
          "05_adaptive_sparse", "fig-05-as-speed", reads="the whole training run (the same epochs)"),
    Claim("as_speed_quality", "AS-Speed", "… while maintaining accuracy (the same epochs)",
          "\"maintaining classification effectiveness\"", "final test accuracy of AS-Speed minus that of CE, "
          "both trained for the same epochs", Rule("value", 0.0, 0.005, band=(-0.005, 0.005)),
          "05_adaptive_sparse", "fig-05-as-speed", **_PTS),
    Claim("as_tracks", "AS-Softmax", "the AS loss tracks validation accuracy (softmax's does not)",
          "SST-5: Pearson −0.952 (AS) vs +0.038 (softmax); a third-party note, unverified",
          "correlation over epochs of training loss with test accuracy, AS minus softmax",
          Rule("direction", 0.0, 0.1, side=-1), "05_adaptive_sparse", "fig-05-delta-sweep",
          reads="every epoch of the runs (the claim is about the whole curve)"),
]}


# Which sweeps of its chapter each claim reads: chapter 07's "runs" column describes them
# (softgrad.book.setup_text, from the parameters the chapter was executed with).
SWEEPS: dict[str, tuple[str, ...]] = {
    "t_beta_vs_init": ("beta", "init_scale"), "t_p1": ("p1", "p1_control"), "t_p2": ("flow_p2",), "t_p3": ("p1",),
    "t_p4": ("flow_p4",), "t_p5": ("flow_p5",), "t_p5_time": ("flow_p5",), "gd_calibration": ("beta",),
    "gd_curriculum": ("beta",), "gd_warmup": ("warmup", "beta"), "ns_large_alpha": ("alpha",),
    "ns_saturation": ("alpha",), "ns_negative": ("ablation", "alpha"), "sgt_ce": ("alpha",), "sgt_norm": ("alpha",),
    "as_speed_time": ("baseline", "speed"), "as_speed_quality": ("baseline", "speed"), "as_tracks": ("delta", "baseline"),
}
assert set(SWEEPS) == set(CLAIMS)


# ---------------------------------------------------------------------------------------------------------
# Seed tables and the bootstrap


@dataclass
class SeedTable:
    """Per-run values arranged for resampling seeds: ``values[c, m, s]`` is metric m of configuration c under
    seed s (nan where the run has no value). ``index`` names the configurations (a DataFrame of their keys)."""

    index: pd.Index  # one level per key (a plain Index for one key)
    metrics: list[str]
    seeds: np.ndarray
    values: np.ndarray  # (configs, metrics, seeds)

    def means(self, idx: np.ndarray | None = None) -> pd.DataFrame:
        """Seed means of every metric (over the seeds at positions ``idx``; all seeds if None)."""
        v = self.values if idx is None else self.values[:, :, idx]
        with np.errstate(invalid="ignore"), _quiet():
            m = np.nanmean(v, axis=2)
        return pd.DataFrame(m, index=self.index, columns=self.metrics)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def at_epoch(df: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """The rows of ``df`` at ``epoch`` (each run's state after that epoch): a stand-in for the final rows."""
    return df[df["epoch"] == epoch].copy()


def seed_table(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], seed: str = "seed") -> SeedTable:
    """A :class:`SeedTable` from one row per (configuration, seed): ``keys`` name the configuration."""
    keys, metrics = list(keys), list(metrics)
    dup = runs.duplicated(keys + [seed])
    if dup.any():
        raise ValueError(f"more than one row per configuration and seed: {runs.loc[dup, keys + [seed]].head(3).to_dict('records')}")
    wide = runs.pivot_table(index=keys, columns=seed, values=metrics, aggfunc="first", dropna=False)
    seeds = np.array(sorted(runs[seed].unique()))
    vals = np.stack([wide[m].reindex(columns=seeds).to_numpy(float) for m in metrics], axis=1)
    return SeedTable(wide.index, metrics, seeds, vals)


def bootstrap(tables: Sequence[SeedTable], statistic: Callable[..., float], n: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict:
    """``statistic(*means)`` on the seed means of ``tables``, with a percentile bootstrap interval.

    Every replicate draws one resample of seed positions (with replacement) and applies it to every table,
    so quantities that combine tables (or configurations) stay paired by seed. Returns ``{'est', 'lo', 'hi',
    'n_seeds'}``; a replicate whose statistic is not finite counts at the end of the scale it fell off
    (+inf / -inf), nan replicates are dropped (and counted in ``'dropped'``).
    """
    s = len(tables[0].seeds)
    for t in tables[1:]:
        if not np.array_equal(t.seeds, tables[0].seeds):
            raise ValueError("the tables of one statistic must share their seeds")
    est = float(statistic(*[t.means() for t in tables]))
    rng = np.random.default_rng(seed)
    reps = np.array([statistic(*[t.means(idx) for t in tables]) for idx in rng.integers(0, s, size=(n, s))], float)
    ok = ~np.isnan(reps)
    if not ok.any():
        return {"est": est, "lo": math.nan, "hi": math.nan, "n_seeds": int(s), "dropped": int(n)}
    lo, hi = percentile_interval(reps[ok], confidence)
    return {"est": est, "lo": lo, "hi": hi, "n_seeds": int(s), "dropped": int((~ok).sum())}


def estimate(claim_id: str, statistic: Callable[..., float], final: Sequence[SeedTable],
             earlier: Sequence[SeedTable] | None = None, epochs: tuple[int, int] | None = None, n: int = 1000) -> dict:
    """A claim's glued estimate: the statistic on ``final`` with its interval, and, for claims read at the end of
    training, the interval of its change from ``earlier`` (the same runs at an earlier epoch) to ``final``.
    Values are plain floats (None for nan) so that chapter 07 can read them back from the notebook."""
    c = CLAIMS[claim_id]
    out = bootstrap(final, statistic, n=n)
    if c.reads == "end":
        if earlier is None:
            raise ValueError(f"claim {claim_id!r} is read at the end of training: pass the earlier tables")
        k = len(final)
        ch = bootstrap([*final, *earlier], lambda *m: statistic(*m[:k]) - statistic(*m[k:]), n=n)
        out.update(change=ch["est"], change_lo=ch["lo"], change_hi=ch["hi"], epochs=list(epochs or ()))
    # nan and ±inf (a ratio whose denominator never arrived) are glued as None: chapter 07 reads the values
    # back as Python literals, which have no spelling for them
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _f(v) -> float:
    return math.nan if v is None else float(v)


def settled(claim: Claim, est: dict) -> bool:
    """Whether a claim read at the end of training has settled: the interval of the statistic's change over
    the second half of training lies within ± the larger of the claim's margin and a tenth of the estimate's
    distance from the null (a relative change below 10 %: a large effect may still drift a little without
    its verdict being in doubt)."""
    clo, chi, e = _f(est.get("change_lo")), _f(est.get("change_hi")), _f(est.get("est"))
    tol = max(claim.rule.margin, 0.1 * abs(e - claim.rule.null)) if math.isfinite(e) else claim.rule.margin
    return math.isfinite(clo) and math.isfinite(chi) and -tol <= clo and chi <= tol


def judge(claim: Claim, est: dict) -> tuple[str, str]:
    """(verdict, note) of a claim from its glued estimate, by the claim's rule (module docstring)."""
    r, lo, hi = claim.rule, _f(est.get("lo")), _f(est.get("hi"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, "no finite interval"
    if claim.reads == "end" and not settled(claim, est):
        return INCONCLUSIVE, "not settled"
    inside_null = r.null - r.margin < lo and hi < r.null + r.margin
    if r.kind == "value" and r.band[0] <= r.null <= r.band[1]:  # a weak-effect claim: its opposite is a strong one
        b0, b1 = r.band
        if b0 <= lo and hi <= b1:
            return REPRODUCED, ""
        return (REVERSED if hi < b0 or lo > b1 else INCONCLUSIVE), ""
    if inside_null:  # an effect smaller than the margin is not the effect claimed (as in chapter 06)
        return NO_EFFECT, ""
    if r.kind == "direction":
        if (lo > r.null) if r.side > 0 else (hi < r.null):
            return REPRODUCED, ""
        if (hi < r.null) if r.side > 0 else (lo > r.null):
            return REVERSED, ""
        return INCONCLUSIVE, ""
    b0, b1 = r.band
    if b0 <= lo and hi <= b1:
        return REPRODUCED, ""
    side = 1 if (b0 + b1) / 2 > r.null else -1
    excl_pred = lo > r.null if side > 0 else hi < r.null
    excl_other = hi < r.null if side > 0 else lo > r.null
    if excl_other:
        return REVERSED, ""
    if excl_pred and (hi < b0 or lo > b1):
        return PARTLY, "the sign, not the size"
    return INCONCLUSIVE, ""


def fmt_interval(est: dict, claim: Claim, key: str = "") -> str:
    """A claim's estimate (or, with ``key="change"``, its change) and interval in the claim's display unit:
    :func:`softgrad.common.interval_text`."""
    p = key + "_" if key else ""
    e, lo, hi = (est.get(k) for k in ((key or "est"), p + "lo", p + "hi"))
    return interval_text(e, lo, hi, scale=claim.scale, unit=claim.unit)


def publish(estimates: dict[str, dict]):
    """A chapter's claims published: each estimate glued as ``claim_<id>`` (chapter 07 and the intro read them
    back) and the :func:`report` table returned for display."""
    from myst_nb import glue

    for cid, est in estimates.items():
        glue(f"claim_{cid}", est, display=False)
    return report(estimates)


def report(estimates: dict[str, dict]):
    """:func:`claims_table` rendered for the book, verdicts colour-coded."""
    from .plots import VERDICT_BACKGROUND, table

    return table(claims_table(estimates), formats={},
                 styles={"verdict": lambda v: VERDICT_BACKGROUND.get(v.split(" (")[0], "")})


def claims_table(estimates: dict[str, dict]) -> pd.DataFrame:
    """The claims of one chapter as a table: statistic, estimate [interval], change since the earlier epoch,
    the rule and the verdict (``estimates``: claim id -> :func:`estimate`)."""
    rows = []
    for cid, est in estimates.items():
        c = CLAIMS[cid]
        v, note = judge(c, est)
        rows.append({"claim": c.text, "statistic": c.statistic, "estimate [95% interval]": fmt_interval(est, c),
                     "change over the second half": (fmt_interval(est, c, "change") + f" (epochs {est['epochs'][0]}→"
                                                        f"{est['epochs'][1]})") if c.reads == "end" else c.reads,
                     "rule": c.rule.describe(c.unit, c.scale), "verdict": v + (f" ({note})" if note else "")})
    return pd.DataFrame(rows)
