"""Time the parts of the quick suite that docs/performance.md names, one process, one thread.

    python scripts/time_parts.py [--cache-dir DIR] [--out FILE.md]

What it times (seconds, each part alone, after a warm-up where the part has one):

- the engine's reference: ms per configuration-step of the quick grid's shape (K = 9, ResNet-8
  width 8, batch 16; the figure every whole-suite time in the log is read against);
- ``storage.code_version()``, which every cache lookup of a run reads (mean of 10 calls after the
  first);
- the geometry claims' measurements (C1, C2, C3) on ResNet-8 at the quick budget's width 8 and at
  16, on the quick budget's probe batch;
- C9's measurement (its 64 draws at both checkpoints) on its run, which is read from the engine's
  cache under ``--cache-dir`` when a cold ``pytest claims/ --cache-dir DIR`` left it there, and
  trained here (once, into that cache) otherwise.

Prints a markdown table (and writes it to ``--out``) with the machine and the versions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path


def seconds(fn, repeat: int = 1) -> float:
    """Mean wall-clock seconds of ``repeat`` calls of ``fn()``."""
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def geometry(budget) -> dict[str, float]:
    """C1, C2, C3's probe (their measure without the session) on ResNet-8 at widths 8 and 16,
    the budget's probe batch."""
    from wd_claims.claims import (
        test_c01_scale_invariance,
        test_c02_orthogonality,
        test_c03_gradient_scaling,
    )

    from wd_claims.data import DeviceData, resolve
    from wd_claims.zoo import MODELS, at_width

    train_images, _ = resolve(None, download=False, n_train=budget.probe_batch, n_test=0,
                              require_real=False)
    batch = DeviceData.from_images(train_images)
    out = {}
    for width in (8, 16):
        spec = at_width(MODELS["resnet8"], width)
        for cid, module in (("C1", test_c01_scale_invariance), ("C2", test_c02_orthogonality),
                            ("C3", test_c03_gradient_scaling)):
            out[f"{cid} measure, ResNet-8 width {width}"] = seconds(
                lambda m=module, s=spec: m.probe(s, batch.x, batch.y, batch.name))
    return out


def noise(budget, cache_dir: Path | None) -> dict[str, float]:
    """C9's measure on its run (cached under ``cache_dir``, or trained here first)."""
    from wd_claims.cache import Cache
    from wd_claims.data import DeviceData, resolve
    from wd_claims.regularization_checks import noise_run_measure, noise_runs
    from wd_claims.train import cache_fields, train

    train_images, test_images = resolve(None, download=False, n_train=budget.n_train,
                                        n_test=budget.n_test, require_real=False)
    data, test = DeviceData.from_images(train_images), DeviceData.from_images(test_images)
    (config,) = noise_runs(budget, (train_images, test_images), "resnet8")
    cache = Cache(cache_dir) if cache_dir is not None else None
    cached = cache is not None and cache.load(cache_fields(config, data, test, "cpu")) is not None
    trained = time.perf_counter()
    run = train(config, data, test, cache=cache, progress=False)
    trained = time.perf_counter() - trained
    measure = seconds(lambda: noise_run_measure(budget)(run, data))
    how = "read from the cache" if cached else "trained here"
    return {f"C9's run ({config.steps} steps, {how})": trained,
            "C9 measure (its draws at both checkpoints)": measure}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the engine's cache of a cold quick run (else C9's run trains here)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import torch

    from wd_claims import storage
    from wd_claims.config import BUDGETS

    torch.set_num_threads(1)
    budget = BUDGETS["quick"]
    from wd_claims.train import step_ms

    rows = {"engine reference (ms per configuration-step, K = 9, width 8, batch 16)":
            step_ms(9, 8, 16)}
    storage.code_version()     # the first call reads and parses every engine file
    rows["storage.code_version() per call (after the first)"] = seconds(storage.code_version, 10)
    rows.update(geometry(budget))
    rows.update(noise(budget, args.cache_dir))
    lines = [f"`python scripts/time_parts.py{' --cache-dir DIR' if args.cache_dir else ''}` — "
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"torch {torch.__version__}, 1 thread",
             "", "| part | seconds |", "|---|---:|"]
    lines += [f"| {name} | {value:.3g} |" for name, value in rows.items()]
    geometry_8 = [v for k, v in rows.items() if k.startswith("C") and k.endswith("width 8")]
    geometry_16 = [v for k, v in rows.items() if k.startswith("C") and k.endswith("width 16")]
    lines += ["", f"C1 + C2 + C3: {sum(geometry_8):.1f} s at width 8, {sum(geometry_16):.1f} s "
              "at width 16."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
