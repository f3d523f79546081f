"""Command line: ``python -m softgrad run PARAMS.yaml [--set key=value ...] [--executor ray]`` and ``validate``.

Under ``torchrun --nproc_per_node N -m softgrad run ...`` every run is trained data-parallel (DDP) across
the N processes; see :mod:`softgrad.train`."""

from __future__ import annotations

import argparse
import sys

from .config import MAX_RUNS, ConfigError, load_params, parse_set
from .runs import RunFailures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="softgrad", description="softgrad experiment runner")
    ap.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or load cached) every config of a parameter file")
    r.add_argument("params")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; loss_params.NAME=... for loss parameters)")
    r.add_argument("--sweep", action="append", default=None, help="run only these sweeps")
    r.add_argument("--profile", default=None, help="override the file's profile (output folder)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--executor", default="local", choices=["local", "processes", "ray"],
                   help="local: sequential; processes: a local process pool; ray: Ray tasks (pip install softgrad[ray])")
    r.add_argument("--workers", type=int, default=None, help="processes / local Ray CPUs")
    r.add_argument("--address", default=None, help="Ray cluster address (e.g. ray://head:10001 or auto)")
    v = sub.add_parser("validate", help="check parameter files without training")
    v.add_argument("params", nargs="+")
    for p in (r, v):
        p.add_argument("--allow-large-grid", action="store_true",
                       help=f"allow more than {MAX_RUNS} runs in one invocation")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try:
        return _dispatch(a)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:  # user error: one line, exit 2
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailures as e:  # each failure was reported as it happened; the others are saved
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved and an interrupted run resumes from its last epoch; "
              "run the same command again", file=sys.stderr)
        return 130


def _dispatch(a) -> int:
    from .runs import plan_params, run_params

    if a.cmd == "validate":
        for path in a.params:
            p = load_params(path, allow_large=a.allow_large_grid)
            n = sum(len(c) for _, c in plan_params(p, allow_large=a.allow_large_grid))
            extra = ""
            if "protocol" in p["extra"]:
                from .protocol import count

                c = count(p["base"], p["extra"]["protocol"])
                # a protocol notebook's base is the tasks' common settings, not a run of its own
                n = (n if p["sweeps"] else 0) + c["total"]
                extra = (f"; protocol: {c['pool']} pool + {c['longer']} convergence gate + {c['retrain']} winner "
                         f"retrains + {c['rerun']} rerun")
            print(f"{path}: ok ({len(p['sweeps'])} sweeps, {n} runs, profile {p['profile']!r}{extra})")
        return 0
    p = load_params(a.params, allow_large=a.allow_large_grid)
    if a.profile:
        p["profile"] = a.profile
    # run_params builds (and so validates) every config of every sweep before any training
    df = run_params(p, sweeps=a.sweep, overrides=parse_set(a.set), progress=not a.quiet, executor=a.executor,
                    workers=a.workers, address=a.address, allow_large=a.allow_large_grid)
    if df.empty:
        print(f"{a.params}: nothing to train (no base settings and no sweeps)")
        return 0
    fin = df[df["final"]]
    cols = [c for c in ("sweep", "loss", "seed", "test_acc", "test_nll", "test_ece") if c in fin]
    print(fin[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
