"""Compare the verdicts of two regenerations of a profile (e.g. under two torch releases).

    python -m softgrad.verdicts outputs/quick/notebooks /elsewhere/outputs/quick/notebooks

Reads the verdicts glued by chapter 07 (``claims_verdicts``: one per claim) and chapter 06
(``h2h_verdicts``: one per task × method × metric, and across tasks) from the executed notebooks of each
folder, prints a table of every verdict that differs, and exits 1 if any does (0 if all agree, 2 if a
folder lacks the notebooks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .analysis import read_glue

__all__ = ["load_verdicts", "compare_verdicts", "main"]

SOURCES = (("07_paper_claims", "claims_verdicts", 2), ("06_head_to_head", "h2h_verdicts", 3))


def load_verdicts(folder: str | Path) -> dict[tuple, str]:
    """{(chapter, *key): verdict} from the executed notebooks in ``folder``."""
    out = {}
    for nb, name, nkey in SOURCES:
        path = Path(folder) / f"{nb}.ipynb"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: execute the profile first (python -m softgrad.pipeline notebooks)")
        rows = read_glue(path).get(name)
        if rows is None:
            raise KeyError(f"{path} has no glued {name!r}: regenerate it with this version of softgrad")
        for r in rows:
            out[(nb[:2], *r[:nkey])] = r[nkey]
    return out


def compare_verdicts(a: dict, b: dict) -> list[tuple]:
    """[(key, verdict in a, verdict in b)] for every key whose verdicts differ (or exist on one side only)."""
    return [(k, a.get(k, "—"), b.get(k, "—")) for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="softgrad.verdicts", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="folder of executed notebooks (e.g. outputs/quick/notebooks)")
    ap.add_argument("b", help="the other folder")
    args = ap.parse_args(argv)
    try:
        va, vb = load_verdicts(args.a), load_verdicts(args.b)
    except (FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    diff = compare_verdicts(va, vb)
    n7 = sum(k[0] == "07" for k in va)
    print(f"{len(va)} verdicts in {args.a} ({n7} claims in chapter 07, {len(va) - n7} comparisons in chapter 06); "
          f"{len(vb)} in {args.b}")
    if not diff:
        print("all verdicts agree")
        return 0
    print(f"{len(diff)} verdicts differ:")
    for k, x, y in diff:
        print(f"  {' · '.join(map(str, k))}: {x!r} -> {y!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
