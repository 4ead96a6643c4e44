"""A pytest plugin for the project's own tests: torchvision's ``CIFAR10`` accepts the CIFAR-format
files the tests write (``tests.bench.cifar_format``), whose md5 sums cannot match the published
ones. Loading, decoding and every other check stay torchvision's. Never used outside tests/."""

from __future__ import annotations

from pathlib import Path


def pytest_configure(config) -> None:
    from torchvision.datasets import CIFAR10, cifar

    def written_by_the_tests(self) -> bool:
        return (Path(self.root) / self.base_folder / "batches.meta").exists()

    CIFAR10._check_integrity = written_by_the_tests
    cifar.check_integrity = lambda path, md5=None: Path(path).is_file()   # batches.meta's check
