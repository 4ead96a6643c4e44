"""Real images besides CIFAR-10: scikit-learn's handwritten digits, and a user's own tensors.

``--data`` names the source (:data:`SOURCES`, or ``MODULE:FACTORY``):

- ``digits``: the 1,797 real 8×8 grey images of scikit-learn's ``load_digits`` (they ship with
  the dependency; nothing is downloaded), brought to the models' input shape by repeating every
  pixel 4×4 (32×32, nearest neighbour: no invented detail) and the grey channel three times.
  A fixed split (seed 0) keeps 1,437 for training and 360 for testing. Digits are not mirror-
  symmetric, so their augmentation is the random crop only (``ImageData.mirror`` is False).
- ``MODULE:FACTORY``: ``FACTORY()`` returns ``((x_train, y_train), (x_test, y_test))``, x uint8
  (N, 3, H, W) with H, W ≥ 8, y integer labels in [0, 10) (the zoo's models have ten outputs).
  Anything else is a :class:`wd_claims.data.DataUnavailable` that says what is wrong. The name
  carries a hash of the tensors, so the run cache tells two data sets apart.

Both are normalized per channel with their own training images' mean and standard deviation.
"""

from __future__ import annotations

import hashlib
import importlib

import numpy as np
import torch

from wd_claims.data import DataUnavailable, ImageData

SOURCES = ("auto", "standin", "cifar10", "digits")   # --data's names; else MODULE:FACTORY
NUM_CLASSES = 10                  # the zoo's models' outputs
DIGITS_TEST = 360                 # the digits' held-out images (20 %)
DIGITS_NAME = "digits (scikit-learn, real 8×8 images ×4 to 32×32, 3 channels)"


def check_source(source: str) -> str:
    """``source`` if --data can mean it, else a ValueError naming the choices."""
    if source in SOURCES or _split_spec(source) is not None:
        return source
    raise ValueError(f"--data {source!r}: expected one of {', '.join(SOURCES)} or "
                     "MODULE:FACTORY")


def _split_spec(source: str) -> tuple[str, str] | None:
    module, sep, factory = source.partition(":")
    ok = sep and module and factory and all(p.isidentifier() for p in module.split(".")) \
        and factory.isidentifier()
    return (module, factory) if ok else None


def load_digits_split(n_train: int, n_test: int) -> tuple[ImageData, ImageData]:
    """(train, test) digits: the first ``n_train`` of the 1,437 training images and the first
    ``n_test`` of the 360 held out (the split fixed by seed 0)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataUnavailable(f"--data digits needs scikit-learn ({exc}); install it") from exc
    bunch = load_digits()
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)        # (1797, 8, 8), 0–16
    x = torch.from_numpy(grey).repeat_interleave(4, 1).repeat_interleave(4, 2)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()                  # (1797, 3, 32, 32)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    return _pair((x[train][:n_train], y[train][:n_train]), (x[test][:n_test], y[test][:n_test]),
                 DIGITS_NAME, mirror=False)


def load_factory(spec: str, n_train: int, n_test: int) -> tuple[ImageData, ImageData]:
    """(train, test) from a user's ``MODULE:FACTORY`` (module docstring), validated; the first
    ``n_train`` / ``n_test`` images when there are more."""
    parts = _split_spec(spec)
    if parts is None:
        raise DataUnavailable(f"--data {spec!r} is not MODULE:FACTORY")
    module, name = parts
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise DataUnavailable(f"--data {spec}: cannot import {name} from {module} ({exc})"
                              ) from exc
    try:
        made = factory()
    except Exception as exc:   # a user's factory: any error, reported with its cause
        raise DataUnavailable(f"--data {spec}: the factory raised {type(exc).__name__}: {exc}"
                              ) from exc
    try:
        (x_train, y_train), (x_test, y_test) = made
    except (TypeError, ValueError) as exc:
        raise DataUnavailable(f"--data {spec}: the factory must return ((x_train, y_train), "
                              f"(x_test, y_test)), got {type(made).__name__}") from exc
    for what, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        validate(x, y, f"--data {spec} ({what})")
    digest = hashlib.sha256()
    for t in (x_train, y_train, x_test, y_test):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    name = f"{spec} (user data, sha256 {digest.hexdigest()[:12]})"
    return _pair((x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test]),
                 name, mirror=True)


def validate(x, y, what: str) -> None:
    """A :class:`DataUnavailable` saying what is wrong unless x is uint8 (N, 3, H, W), H, W ≥ 8,
    and y an integer (N,) tensor of labels in [0, NUM_CLASSES)."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataUnavailable(f"{what}: images and labels must be torch tensors, got "
                              f"{type(x).__name__} and {type(y).__name__}")
    if x.dtype != torch.uint8:
        raise DataUnavailable(f"{what}: images must be uint8 (0–255), got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 8:
        raise DataUnavailable(f"{what}: images must be (N, 3, H, W) with H, W ≥ 8, got "
                              f"{tuple(x.shape)}")
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise DataUnavailable(f"{what}: labels must be a 1-D integer tensor, got "
                              f"{y.dtype} {tuple(y.shape)}")
    if len(x) == 0:
        raise DataUnavailable(f"{what}: no images")
    if len(y) != len(x):
        raise DataUnavailable(f"{what}: {len(x)} images but {len(y)} labels")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= NUM_CLASSES:
        raise DataUnavailable(f"{what}: labels must lie in [0, {NUM_CLASSES}), got "
                              f"[{low}, {high}]")


def _pair(train: tuple, test: tuple, name: str, mirror: bool) -> tuple[ImageData, ImageData]:
    """(train, test) ImageData normalized by the training images' per-channel statistics."""
    pixels = train[0].double().div(255.0).transpose(0, 1).flatten(1)       # (3, N·H·W)
    mean = tuple(pixels.mean(1).tolist())
    std = tuple(pixels.std(1).clamp_min(1e-3).tolist())
    return tuple(ImageData(x.contiguous(), y.to(torch.int64), name, real=True, mirror=mirror,
                           mean=mean, std=std) for x, y in (train, test))


def load(source: str, data_dir, *, download: bool, n_train: int, n_test: int,
         require_real: bool) -> tuple[ImageData, ImageData]:
    """(train, test) images from ``source`` (--data): ``auto`` is CIFAR-10 when a folder or a
    download is given, else the stand-in (:func:`wd_claims.data.resolve`); ``standin`` and
    ``cifar10`` insist on theirs. :class:`DataUnavailable` says why a source cannot be had,
    including the stand-in where ``require_real`` asks for real images."""
    from wd_claims.data import cifar_root, load_cifar10, resolve, standin_cifar

    if source == "digits":
        return load_digits_split(n_train, n_test)
    if source not in SOURCES:
        return load_factory(source, n_train, n_test)
    if source == "cifar10":
        root = cifar_root(data_dir)
        return (load_cifar10(root, train=True, download=download).subset(n_train),
                load_cifar10(root, train=False).subset(n_test))
    if source == "standin":
        if require_real:
            raise DataUnavailable("this budget needs real images; the stand-in is synthetic "
                                  "(pass --data digits, cifar10 or MODULE:FACTORY)")
        return standin_cifar(n_train), standin_cifar(n_test, train=False)
    return resolve(data_dir, download=download, n_train=n_train, n_test=n_test,
                   require_real=require_real)


def preflight(source: str, data_dir, download: bool) -> None:
    """Before any claim runs: a :class:`DataUnavailable` when a source named by --data cannot be
    had (digits and a user's factory are loaded once and validated; a CIFAR-10 folder is
    checked by name). ``auto`` and ``standin`` never fail here: they fall back or skip."""
    from wd_claims.data import cifar_root, diagnose_data_dir

    if source == "digits" or source not in SOURCES:
        load(source, data_dir, download=download, n_train=1, n_test=1, require_real=True)
    elif source == "cifar10" and not download:
        problem = diagnose_data_dir(cifar_root(data_dir))
        if problem:
            raise DataUnavailable(f"--data cifar10: {problem}; pass --data-dir DIR or add "
                                  "--download")
