"""CIFAR-10 on disk in torchvision's format, generated locally, for the baseline benchmark.

CIFAR-10 cannot be downloaded on every machine; the baseline must still go through torchvision's
``CIFAR10`` class. We write the stand-in images as ``cifar-10-batches-py`` (five pickled training
batches, a test batch, ``batches.meta``) and use a subclass that skips only the md5 check (the files
are ours, so their checksums cannot match the published ones); loading, decoding and transforms are
torchvision's own.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10

from wd_claims.data import standin_cifar

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def write_cifar_format(root: Path, n_train: int, n_test: int = 1000, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with stand-in images; returns ``root``."""
    folder = Path(root) / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    train = standin_cifar(n_train, seed=seed)
    test = standin_cifar(n_test, seed=seed, train=False)
    chunks = np.array_split(np.arange(n_train), 5)
    for i, idx in enumerate(chunks, start=1):
        _dump(folder / f"data_batch_{i}", train.x.numpy()[idx], train.y.numpy()[idx])
    _dump(folder / "test_batch", test.x.numpy(), test.y.numpy())
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES}, fh)
    return Path(root)


def _dump(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    # CIFAR stores each image as 3072 bytes, channel-major (R plane, G plane, B plane).
    with open(path, "wb") as fh:
        pickle.dump({"data": x.reshape(len(x), -1), "labels": y.tolist()}, fh)


class LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR10 on files written by :func:`write_cifar_format` (no md5 check)."""

    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.base_folder / "batches.meta").exists()

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / "batches.meta", "rb") as fh:
            self.classes = pickle.load(fh)["label_names"]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
