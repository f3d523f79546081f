"""The protocol's findings in words: the bound an interval excludes (:func:`bound_text`), an interval in its
display unit (:func:`ci_text`), the bottom line read off the across-task verdicts (:func:`bottom_line`), and the
methods' short display names (:data:`SHORT`)."""

from __future__ import annotations

import pandas as pd

from .. import stats as S
from ..common import POINTS

__all__ = ["SHORT", "bound_text", "ci_text", "bottom_line"]


def bound_text(row, scale: float = 1.0, unit: str = "") -> str:
    """The bound an interval excludes, in words, from its improvement side: "rules out a gain above +0.62
    pts" (a higher-is-better metric) or "rules out a reduction beyond −0.031" (NLL, ECE); when the whole
    interval lies on the losing side, "rules out any gain". ``row`` has ``lo``, ``hi``, ``higher_is_better``."""
    lo, hi = row.lo * scale, row.hi * scale
    if row.higher_is_better:
        return f"rules out a gain above {hi:+.2f}{unit}" if hi > 0 else f"rules out any gain (Δ < {hi:+.2f}{unit})"
    return (f"rules out a reduction beyond {lo:+.2f}{unit}" if lo < 0
            else f"rules out any reduction (Δ > {lo:+.2f}{unit})")


SHORT = {"temperature": "temperature", "gradient_decay": "gradient decay", "noisy": "Noisy Softmax", "sgt": "SGT",
         "as_softmax": "AS-Softmax"}


def ci_text(r, metric: str | None = None) -> str:
    """"+0.12 [−0.26, +0.41]" in the metric's display unit (points for accuracy and ECE)."""
    get = (lambda k: r[k]) if isinstance(r, pd.Series) else (lambda k: getattr(r, k))  # noqa: E731 (Series.diff)
    sc = 100 if (metric or get("metric")) in POINTS else 1
    return f"{get('diff') * sc:+.2f} [{get('lo') * sc:+.2f}, {get('hi') * sc:+.2f}]"


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
                    + ", ".join(f"{100 * acc.loc[m].hi:+.2f}" for m in by[S.VERDICTS[2]]) + " points)")
    if by[S.VERDICTS[1]]:
        said.append(f"{_names(by[S.VERDICTS[1]])} lost to it (" + ", ".join(pts(m) for m in by[S.VERDICTS[1]]) + " points)")
    if by[S.VERDICTS[3]]:
        said.append(f"{_names(by[S.VERDICTS[3]])} stayed inconclusive (gains up to "
                    + ", ".join(f"{100 * acc.loc[m].hi:+.2f}" for m in by[S.VERDICTS[3]])
                    + " points are not ruled out, nor losses down to "
                    + ", ".join(f"{100 * acc.loc[m].lo:+.2f}" for m in by[S.VERDICTS[3]]) + ")")
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
