"""The one prepared GPU command: everything that needs a GPU, in at most 8 minutes on one device.

    python scripts/gpu_check.py [--out reports/gpu]      # on a CUDA machine
    python scripts/gpu_check.py --dry-run                # anywhere: tiny sizes, the CPU (CI)

Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``, step by step (a step that fails is
recorded with its error and the next one runs; what finished is never lost):

1. ``peak`` — the device's measured matmul rate (4096², float32 and bf16), the reference for
   every engine figure below (the engine's model-FLOP/s as a fraction of it).
2. ``benchmark`` — K = 9 ResNet-8 (width 16) at batch 128: a typical user's loop (torchvision
   transforms + DataLoader + one configuration after another) against the engine's paths: the
   loop over copies in float32, the fused path (one vmap over the K, wd_claims.fused), the loop
   with bf16 autocast, and with ``compile=True`` (torch.compile, mode "reduce-overhead": CUDA
   graphs for the forward + loss). The fastest is named: set wd_claims.fused.DEFAULT_PATH by it.
3. ``grid_slice`` — the full budget's Fig. 2 grid (9 configurations, every parameter training,
   the default start) for 5 epochs of 50,000 images, timed and extrapolated to 100 epochs × 2
   seeds (the full budget).
4. ``claims`` — C1–C4 on CUDA through pytest (``--budget full``; C4's runs shortened to 2 epochs by
   the test-only shrink, stated in the report), CIFAR-10 stand-in files in its on-disk format
   (this machine cannot download CIFAR-10; the verdicts say which data they used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.bench.cifar_format import write_cifar_format  # noqa: E402
from wd_claims.benchmark import (  # noqa: E402
    matmul_peak_flops,
    training_flops_per_image,
    typical_loop,
)
from wd_claims.data import DeviceData, standin_cifar  # noqa: E402


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak(device: str, n: int) -> dict:
    """Measured matmul TFLOP/s at n×n, float32 (TF32 off) and bf16 (wd_claims.benchmark), and
    ResNet-8's (width 16) forward + backward FLOPs per image (torch.utils.flop_counter)."""
    from wd_claims.models import resnet8

    reps = 20 if device == "cuda" else 2
    return {"float32_tflops": matmul_peak_flops(device, torch.float32, n, reps) / 1e12,
            "bf16_tflops": matmul_peak_flops(device, torch.bfloat16, n, reps) / 1e12,
            "resnet8_flops_per_image": training_flops_per_image(resnet8())}


def benchmark(device: str, steps: int, k: int, cifar_root: Path, batch: int = 128) -> dict:
    """model-images/s of the typical loop and of each engine path; ratios to the typical loop
    (batch 128 as the issue asks; the dry run's smaller batch only exercises the code)."""

    from torchvision import transforms

    from tests.bench.cifar_format import LocalCIFAR10
    from wd_claims.data import CIFAR_MEAN, CIFAR_STD
    from wd_claims.train import TrainConfig, train

    images = batch * steps
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = LocalCIFAR10(str(cifar_root), train=True, transform=tf)
    seconds = typical_loop(dataset, [(0.1, 2.5e-4)] * k, steps, batch, device,
                           num_workers=2 if device == "cuda" else 0)
    rates = {"typical loop": k * images / seconds}
    data = DeviceData.from_images(standin_cifar(images), device)
    paths = {"engine float32": {"path": "loop"}, "engine fused float32": {"path": "fused"},
             "engine bf16-autocast": {"precision": "bf16-autocast", "path": "loop"}}
    if device == "cuda":   # compiling costs ~40 s on a 2-core CPU: not in the dry run
        paths["engine compile (reduce-overhead)"] = {"compile": True, "path": "loop"}
    for name, kw in paths.items():
        config = TrainConfig(etas=(0.1,) * k, lams=(2.5e-4,) * k, steps=steps, batch_size=batch,
                             data=data.name, n_train=len(data), evaluate=False, **kw)
        try:
            train(TrainConfig(**{**config.asdict(), "steps": 2}), data, device=device,
                  progress=False)                      # warm-up: probe, kernels, compilation
            sync(device)
            t0 = time.perf_counter()
            train(config, data, device=device, progress=False)
            sync(device)
            rates[name] = k * images / (time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 — one path failing must not lose the others
            rates[name] = f"failed: {type(exc).__name__}: {exc}"
    numeric = {n: r for n, r in rates.items() if isinstance(r, float)}
    base = numeric["typical loop"]
    return {"k": k, "batch": batch, "steps": steps, "model_images_per_s": rates,
            "ratio_to_typical_loop": {n: r / base for n, r in numeric.items()},
            "fastest_engine_path": max((n for n in numeric if n.startswith("engine")),
                                       key=numeric.get, default=None)}


def grid_slice(device: str, epochs: float, n_images: int) -> dict:
    """The full budget's grid for ``epochs`` epochs, timed; extrapolated to the full budget."""
    from wd_claims.config import BUDGETS
    from wd_claims.recipes import grid_config
    from wd_claims.train import train

    full = BUDGETS["full"]
    data = DeviceData.from_images(standin_cifar(n_images), device)
    config = grid_config(full, 0, data.name)
    steps = max(2, int(epochs * n_images / full.batch_size))
    config = type(config)(**{**config.asdict(), "steps": steps, "n_train": n_images,
                             "evaluate": False})
    sync(device)
    t0 = time.perf_counter()
    result = train(config, data, device=device, progress=False)
    sync(device)
    seconds = time.perf_counter() - t0
    per_step = seconds / steps
    return {"steps": steps, "configurations": config.k, "seconds": seconds,
            "seconds_per_step": per_step,
            "extrapolated_full_budget_s": per_step * full.steps * len(full.seeds),
            "diverged": [d for d in result.diverged if d]}


def claims(device: str, cifar_root: Path, out: Path, dry: bool) -> dict:
    """C1–C4 through pytest on ``device`` at the full budget (C4's runs shortened)."""
    shrink = ({"n_train": 512, "n_test": 256, "epochs": 1, "probe_batch": 8} if dry
              else {"epochs": 2})
    marks = "c01 or c02" if dry else "c01 or c02 or c03 or c04"
    cmd = [sys.executable, "-m", "pytest", "claims/", "-m", marks, "--budget", "full",
           "--device", device, "--data-dir", str(cifar_root), "--report-dir", str(out / "claims"),
           "--cache-dir", str(out / "cache"), "-p", "tests.local_cifar_plugin", "-q",
           "-p", "no:cacheprovider"] + (["-k", "conv_batchnorm"] if dry else [])
    env = {**os.environ, "WD_CLAIMS_TEST_SHRINK": json.dumps(shrink)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return {"command": " ".join(cmd), "shrink": shrink, "returncode": proc.returncode,
            "summary": summary, "seconds": time.perf_counter() - t0,
            "report": str(out / "claims" / "latest.md"), "tail": proc.stdout[-3000:]}


def write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    lines = [f"# GPU check — {results['device_name']}", "",
             f"`{results['command']}` · torch {results['torch']} · {results['started']}", ""]
    for step, value in results["steps"].items():
        lines += [f"## {step}", "", "```", json.dumps(value, indent=1, default=str)[:4000], "```",
                  ""]
    (out / "gpu_check.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "gpu")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on the CPU: checks the script, measures nothing")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    if args.dry_run:
        torch.set_num_threads(1)
    results = {"command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
               "device_name": torch.cuda.get_device_name(0) if device == "cuda" else
               platform.processor() or "cpu", "torch": torch.__version__,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dry_run":
               args.dry_run, "steps": {}}
    cifar = write_cifar_format(args.out / "cifar", n_train=512 if args.dry_run else 50_000,
                               n_test=256 if args.dry_run else 10_000)
    plan = {"peak": lambda: peak(device, 256 if args.dry_run else 4096),
            "benchmark": lambda: benchmark(device, 2 if args.dry_run else 200,
                                           2 if args.dry_run else 9, cifar,
                                           batch=16 if args.dry_run else 128),
            "grid_slice": lambda: grid_slice(device, 0.5 if args.dry_run else 5,
                                             512 if args.dry_run else 50_000),
            "claims": lambda: claims(device, cifar, args.out, args.dry_run)}
    for step, run in plan.items():
        t0 = time.perf_counter()
        try:
            results["steps"][step] = run()
        except Exception:  # noqa: BLE001 — record it, keep going
            results["steps"][step] = {"error": traceback.format_exc()[-3000:]}
        results["steps"][step]["wall_s"] = time.perf_counter() - t0
        if step == "benchmark" and "peak" in results["steps"]:
            b, p = results["steps"][step], results["steps"]["peak"]
            if isinstance(b.get("model_images_per_s"), dict):
                b["fraction_of_peak"] = {   # of the same precision's matmul peak
                    n: r * p["resnet8_flops_per_image"]
                    / (p["bf16_tflops" if "bf16" in n else "float32_tflops"] * 1e12)
                    for n, r in b["model_images_per_s"].items() if isinstance(r, float)}
        write(args.out, results)
        print(f"{step}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
