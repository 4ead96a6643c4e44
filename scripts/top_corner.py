"""Does the full budget's grid corner η = 1, λ = 2.5e-3 collapse when every parameter trains?

Issue 13 asks it of the Fig. 2 grid (wd_claims.config, ``full``): at ηλ = 2.5e-3 the classifier and
the BN affine parameters, which no normalization protects, are decayed by 2ηλ = 0.5 % per step;
on the CPU budgets ηλ ≳ 0.03 killed the network (G → 0, loss → ln 10). This trains the corner and
the opposite one (η = 0.1, λ = 2.5e-4) as the full budget does — ResNet-8 width 16, batch 128,
every parameter, the default start, augmentation, plain SGD with weight_decay = 2λ — for
``--steps`` steps (400 = 8 relaxation times 1/(8ηλ) of the corner; the full run has 39,100) and
prints, every ``--every`` steps, the mean training loss and accuracy since the last line, and the
norms of the unprotected parameters (classifier weight, BN γ). Collapse: the last window's loss
within 2 % of ln 10 and its accuracy below 15 %.

    python scripts/top_corner.py [--steps 400] [--every 50] [--out docs/top_corner.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wd_claims.config import BUDGETS  # noqa: E402
from wd_claims.data import DeviceData, resolve  # noqa: E402
from wd_claims.train import TrainConfig, train  # noqa: E402

CORNERS = ((1.0, 2.5e-3), (0.1, 2.5e-4))   # (η, λ): the top corner, the bottom corner


def unprotected_norms(state: dict) -> dict:
    """‖classifier weight‖ and the RMS of every BN γ, from one checkpoint's state."""
    gammas = [v for k, v in state.items() if k.endswith(".weight") and np.ndim(v) == 1]
    fc = [v for k, v in state.items() if k.endswith(".weight") and np.ndim(v) == 2]
    return {"fc_norm": float(np.linalg.norm(fc[-1])),
            "bn_gamma_rms": float(np.sqrt(np.mean(np.concatenate(gammas) ** 2)))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--data-dir", type=Path, default=None, help="CIFAR-10 (else the stand-in)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    full = BUDGETS["full"]
    train_images, _ = resolve(args.data_dir, download=False, n_train=8192, n_test=0,
                              require_real=False)
    data = DeviceData.from_images(train_images)
    marks = tuple(range(0, args.steps + 1, args.every))
    config = TrainConfig(etas=tuple(e for e, _ in CORNERS), lams=tuple(lam for _, lam in CORNERS),
                         steps=args.steps, batch_size=full.batch_size, width=full.width,
                         augment=full.augment, checkpoints=marks, evaluate=False,
                         data=data.name, n_train=len(data))
    t0 = time.perf_counter()
    result = train(config, data, progress=False)
    rows = []
    for k, (eta, lam) in enumerate(CORNERS):
        loss, acc = result.metrics["loss"][k], result.metrics["accuracy"][k]
        for a, b in zip(marks[:-1], marks[1:], strict=True):
            rows.append({"eta": eta, "lam": lam, "steps": f"{a}–{b}",
                         "loss": float(np.mean(loss[a:b])), "accuracy": float(np.mean(acc[a:b])),
                         **unprotected_norms(result.checkpoints[b][k]),
                         "diverged": result.diverged[k]})
    last = {(r["eta"], r["lam"]): r for r in rows}
    collapsed = {f"η={e:g}, λ={lam:g}": bool(abs(r["loss"] - math.log(10)) < 0.02 * math.log(10)
                                              and r["accuracy"] < 0.15)
                 for (e, lam), r in last.items()}
    print(f"data: {data.name}; ResNet-8 width {full.width}, batch {full.batch_size}, every "
          f"parameter trains, default start; {args.steps} steps in "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| η | λ | steps | mean loss | mean accuracy | ‖classifier W‖ | RMS BN γ |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['eta']:g} | {r['lam']:g} | {r['steps']} | {r['loss']:.3f} | "
              f"{r['accuracy']:.3f} | {r['fc_norm']:.3f} | {r['bn_gamma_rms']:.3f} |")
    print(f"\ncollapsed (last window's loss within 2 % of ln 10 and accuracy < 15 %): {collapsed}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "collapsed": collapsed,
                                        "data": data.name, "steps": args.steps}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
