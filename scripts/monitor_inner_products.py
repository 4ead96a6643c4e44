"""Why the monitor sums its inner products the way it does: time and error of four ways to take
⟨a, b⟩ over 2,359,296 float32 entries (ResNet-18's largest kernel, 512·512·3·3), one thread.

    python scripts/monitor_inner_products.py [--detector]

Prints ms per call and the relative error against a float64 reference, for ⟨a, b⟩ of two random
vectors and for ⟨a, a⟩; ``--detector`` also times the invariance detector's probe of torchvision's
ResNet-18 (what ``Monitor(model, opt, input_shape=...)`` runs once before training).
docs/performance.md quotes its output.
"""

from __future__ import annotations

import argparse
import time

import torch

N = 2_359_296


def _ms(f, k: int = 20) -> float:
    f()
    t0 = time.perf_counter()
    for _ in range(k):
        f()
    return (time.perf_counter() - t0) / k * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, N, generator=gen), torch.randn(1, N, generator=gen)
    ways = {
        "float64-accumulating sum": lambda u, v: torch.sum(u * v, 1, dtype=torch.float64),
        "cascade sum (the monitor)": lambda u, v: (u * v).sum(1).double(),
        "BLAS dot": lambda u, v: torch.dot(u[0], v[0]).double().view(1),
        "float64 copies": lambda u, v: (u.double() * v.double()).sum(1),
    }
    ref_ab, ref_aa = (a.double() * b.double()).sum(1), (a.double() ** 2).sum(1)
    for name, f in ways.items():
        err_ab = float((f(a, b) - ref_ab).abs() / ref_ab.abs())
        err_aa = float((f(a, a) - ref_aa).abs() / ref_aa)
        print(f"{name:27s} {_ms(lambda f=f: f(a, b)):6.2f} ms   relative error ⟨a,b⟩ "
              f"{err_ab:.1e}, ⟨a,a⟩ {err_aa:.1e}")
    if args.detector:
        from torchvision.models import resnet18

        from wd_claims.invariance import scale_invariant_names

        t0 = time.perf_counter()
        names = scale_invariant_names(resnet18(num_classes=10), (3, 32, 32))
        print(f"detector on ResNet-18: {time.perf_counter() - t0:.1f} s, {len(names)} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
