"""Machine info in the saved JSON, and the throughputs and ratios printed at the session's end."""

import os
import platform

import torch

from tests.bench.test_bench_train import FLOORS, FRACTIONS, RESULTS, THREADS


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The instruction-set flags that decide the CPU kernels (oneDNN's bf16 path needs
    avx512_bf16 or amx_bf16)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(line for line in fh if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))


def pytest_benchmark_update_machine_info(config, machine_info):
    cuda = torch.cuda.is_available()
    machine_info.update({
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_flags": _cpu_flags(),
        "torch": torch.__version__, "torch_threads": THREADS,
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else _cpu_model(),
        "load_average": list(os.getloadavg())})


def pytest_terminal_summary(terminalreporter):
    for name, times in FLOORS.items():
        terminalreporter.write_line(f"engine at the {name} budget's size: {times:.1f}× its FLOP "
                                    "floor (the float32 matmul peak measured here)")
    if not RESULTS:
        return
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    terminalreporter.write_sep("-", "training throughput (model-images/s)")
    terminalreporter.write_line(f"ResNet-8 width 16, K = 9, batch 128, {THREADS} thread(s), "
                                f"device {_device_name()}, load average {load}")
    for name, rate in RESULTS.items():
        ratio = (f"   ratio {rate / RESULTS['baseline']:.2f}x (engine / baseline)"
                 if name != "baseline" and "baseline" in RESULTS else "")
        share = (f"   {100 * FRACTIONS[name]:.1f} % of the matmul peak"
                 if name in FRACTIONS else "")
        terminalreporter.write_line(f"{name:>22}: {rate:8,.0f}{ratio}{share}")


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else _cpu_model()
