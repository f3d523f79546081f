"""Would a C++ op make the small-shape losses cheaper? Two prototypes against ``F.cross_entropy``, same run.

Usage::

    python benchmarks/cpp_floor.py                    # 128x10 and 4096x10, CPU; JIT-builds a C++ extension
    python benchmarks/cpp_floor.py --shapes 128x10 --repeats 41

At a training batch of a small classifier (128 x 10) a loss costs dispatch, not arithmetic: the question is
whether the Python layer is what makes softgrad's native compositions slower than ``F.cross_entropy``. The
extension (built once by ``torch.utils.cpp_extension.load_inline``, ~40 s; needs a C++ compiler and ninja)
holds:

- ``sgt (C++ ATen)``, ``as_softmax (C++ ATen)``: the same ATen ops as softgrad's compositions, inside one
  C++ ``torch::autograd::Function`` (no Python between the ops);
- ``ce (C++ loops)``: plain CE (mean, float32) written as two hand loops, one autograd node, no ATen kernel:
  the floor of a fused custom op.

Rows report the median of interleaved samples (bursts of calls, as ``benchmarks/losses.py``) divided by
``F.cross_entropy``'s, with softgrad's own modules beside them. Not part of the test suite or ``make bench``
(it needs a compiler); nothing in softgrad uses the extension.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from losses import inner_calls, time_call  # noqa: E402  (benchmarks/losses.py)
from softgrad import losses as L  # noqa: E402

CPP = r"""
#include <torch/extension.h>
#include <cmath>
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// softgrad's native SGT composition (no smoothing, mean, no weight), as one C++ autograd Function
struct SGTFn : public torch::autograd::Function<SGTFn> {
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor t, double alpha) {
    auto ls = at::log_softmax(z, 1);
    auto res = at::nll_loss_forward(ls, t, {}, at::Reduction::Mean, -100);
    ctx->save_for_backward({z, t, std::get<1>(res)});
    ctx->saved_data["a"] = alpha;
    return std::get<0>(res);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto s = ctx->get_saved_variables();
    auto la = at::log_softmax(s[0] * ctx->saved_data["a"].toDouble(), 1);
    auto G = at::nll_loss_backward(g[0], la, s[1], {}, at::Reduction::Mean, -100, s[2]);
    return {at::_log_softmax_backward_data(G, la, 1, la.scalar_type()), Tensor(), Tensor()};
  }
};

// softgrad's native AS-Softmax composition (the official recipe), as one C++ autograd Function
struct ASFn : public torch::autograd::Function<ASFn> {
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor t, double delta) {
    auto p = at::softmax(z, 1);
    auto keep = at::le(at::sub(p.gather(1, t.unsqueeze(1)), p), delta);
    auto ls = at::log_softmax(z.masked_fill(keep.logical_not(), -INFINITY), 1);
    auto res = at::nll_loss_forward(ls, t, {}, at::Reduction::Mean, -100);
    ctx->save_for_backward({ls, t, std::get<1>(res)});
    return std::get<0>(res);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto s = ctx->get_saved_variables();
    auto G = at::nll_loss_backward(g[0], s[0], s[1], {}, at::Reduction::Mean, -100, s[2]);
    return {at::_log_softmax_backward_data(G, s[0], 1, s[0].scalar_type()), Tensor(), Tensor()};
  }
};

// plain CE, mean, float32 (N, C) contiguous, as hand loops: one pass forward (saves p), one backward.
// The upstream gradient is assumed to be 1 (loss.backward()), to keep the floor free of a device read.
struct CELoopFn : public torch::autograd::Function<CELoopFn> {
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor t) {
    const int64_t N = z.size(0), C = z.size(1);
    auto p = at::empty_like(z);
    auto out = at::empty({}, z.options());
    const float* zp = z.data_ptr<float>();
    float* pp = p.data_ptr<float>();
    const int64_t* tp = t.data_ptr<int64_t>();
    double acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float* r = zp + n * C;
      float* q = pp + n * C;
      float m = r[0];
      for (int64_t c = 1; c < C; ++c) m = std::max(m, r[c]);
      float s = 0;
      for (int64_t c = 0; c < C; ++c) { q[c] = std::exp(r[c] - m); s += q[c]; }
      const float inv = 1.f / s;
      for (int64_t c = 0; c < C; ++c) q[c] *= inv;
      acc += std::log(s) + m - r[tp[n]];
    }
    out.data_ptr<float>()[0] = static_cast<float>(acc / N);
    ctx->save_for_backward({p, t});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto s = ctx->get_saved_variables();
    const int64_t N = s[0].size(0), C = s[0].size(1);
    auto gz = at::empty_like(s[0]);
    const float sc = 1.0f / N;
    const float* pp = s[0].data_ptr<float>();
    float* gp = gz.data_ptr<float>();
    const int64_t* tp = s[1].data_ptr<int64_t>();
    for (int64_t i = 0; i < N * C; ++i) gp[i] = pp[i] * sc;
    for (int64_t n = 0; n < N; ++n) gp[n * C + tp[n]] -= sc;
    return {gz, Tensor()};
  }
};

Tensor sgt(Tensor z, Tensor t, double a) { return SGTFn::apply(z, t, a); }
Tensor as_softmax(Tensor z, Tensor t, double d) { return ASFn::apply(z, t, d); }
Tensor ce_loops(Tensor z, Tensor t) { return CELoopFn::apply(z, t); }
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["128x10", "4096x10"])
    ap.add_argument("--repeats", type=int, default=25)
    a = ap.parse_args(argv)
    from torch.utils.cpp_extension import load_inline

    try:
        ext = load_inline("softgrad_cpp_floor", cpp_sources=CPP, functions=["sgt", "as_softmax", "ce_loops"],
                          extra_cflags=["-O3"])
    except Exception as e:  # no compiler or ninja: say so in one line
        raise SystemExit(f"cpp_floor: could not build the C++ extension ({type(e).__name__}: {str(e).splitlines()[0]})")
    dev = torch.device("cpu")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'N x C':>10} {'loss':26} {'median ms':>10} {'x F.ce':>7}")
    for shape in a.shapes:
        n, c = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        z = (torch.randn(n, c, generator=g) * 3).requires_grad_(True)
        t = torch.randint(0, c, (n,), generator=g)
        # the prototypes compute the same numbers as softgrad (checked before timing)
        for mine, ref in [(lambda: ext.sgt(z, t, 0.3), L.make_loss("sgt", alpha=0.3)),
                          (lambda: ext.as_softmax(z, t, 0.1), L.make_loss("as_softmax", delta=0.1)),
                          (lambda: ext.ce_loops(z, t), L.make_loss("ce"))]:
            ga, gb = (torch.autograd.grad(f(), z)[0] for f in (mine, lambda: ref(z, t)))
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)

        def run(f):
            def step():
                z.grad = None
                f().backward()
            return step

        fns = {"F.cross_entropy": run(lambda: F.cross_entropy(z, t)),
               "ce (C++ loops)": run(lambda: ext.ce_loops(z, t)),
               "sgt (softgrad)": run(lambda m=L.make_loss("sgt", alpha=0.3): m(z, t)),
               "sgt (C++ ATen)": run(lambda: ext.sgt(z, t, 0.3)),
               "as_softmax (softgrad)": run(lambda m=L.make_loss("as_softmax", delta=0.1): m(z, t)),
               "as_softmax (C++ ATen)": run(lambda: ext.as_softmax(z, t, 0.1))}
        for f in fns.values():
            f(), f()
        inner = inner_calls(fns["F.cross_entropy"], dev)
        times = {k: [] for k in fns}
        for _ in range(a.repeats):
            for k, f in fns.items():
                times[k] += time_call(f, dev, 1, inner)
        base = statistics.median(times["F.cross_entropy"])
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{shape:>10} {k:26} {med * 1e3:10.3f} {med / base:7.2f}")


if __name__ == "__main__":
    main()
