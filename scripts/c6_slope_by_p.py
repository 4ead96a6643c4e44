"""C6's second-order slope read again on the largest p only: where the residual's deficit sits.

    python scripts/c6_slope_by_p.py [reports/article]

Reads a sample's recorded C6 measurements (block means of p = η_e‖g‖ and of the exact-factor
residual, per configuration) and prints the OLS slope of log residual on log p, with sympy's
block-averaged prediction beside it, over the blocks whose p is above each quantile. A report,
not a verdict: the claim's criterion is fixed and reads every block.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from wd_claims.files import load_measurements


def main(sample: str = "reports/article") -> None:
    m = load_measurements(Path(sample) / "measurements" / "C6-resnet8.npz")
    logs = [np.log(np.asarray(m[k], float)).ravel() for k in ("p", "exact", "pred")]
    log_p, log_r, log_pred = logs
    ok = np.isfinite(log_p) & np.isfinite(log_r)
    for q in (0.0, 0.25, 0.5, 0.75):
        kept = ok & (log_p >= np.quantile(log_p[ok], q))
        slope = np.polyfit(log_p[kept], log_r[kept], 1)[0]
        pred = np.polyfit(log_p[kept], log_pred[kept], 1)[0]
        print(f"blocks with p above its {q:.0%} quantile ({kept.sum()}): slope {slope:.4f}, "
              f"sympy's {pred:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
