"""Print the benchmark throughputs and their ratio at the end of the session."""

from tests.bench.test_bench_train import RESULTS


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.write_sep("-", "training throughput (model-images/s)")
    for name, rate in RESULTS.items():
        terminalreporter.write_line(f"{name:>9}: {rate:,.0f}")
    if {"engine", "baseline"} <= RESULTS.keys():
        terminalreporter.write_line(f"    ratio: {RESULTS['engine'] / RESULTS['baseline']:.2f}x "
                                    "(engine / baseline, same model, steps and device)")
