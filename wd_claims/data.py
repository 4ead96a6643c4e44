"""Data: CIFAR-10 through torchvision, or a deterministic offline stand-in of the same shape.

Everything ends as a :class:`DeviceData`: normalized float tensors resident on the device, so a
training step is index → gather → augment, all on the device. Augmentation (random crop with
4-pixel zero padding and horizontal flip, the CIFAR standard) is done for a whole batch at once.

Where the data come from:

- ``--data-dir DIR`` or the environment variable ``WD_CLAIMS_DATA``: a folder holding torchvision's
  ``cifar-10-batches-py`` (checked with torchvision's md5 integrity check).
- ``--download`` or ``WD_CLAIMS_DOWNLOAD=1``: let torchvision download into that folder.
- otherwise, claims that may run on a stand-in use :func:`standin_cifar`, and say so; claims whose
  budget needs CIFAR-10 are skipped with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ENV_DATA_DIR = "WD_CLAIMS_DATA"
ENV_DOWNLOAD = "WD_CLAIMS_DOWNLOAD"
# Per-channel mean and std of the CIFAR-10 training images (the usual constants).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
STANDIN_NAME = "stand-in (synthetic, CIFAR-shaped; wd_claims.data.standin_cifar)"


class DataUnavailable(RuntimeError):
    """CIFAR-10 was asked for and cannot be had; the message says what to do."""


@dataclass
class ImageData:
    """Raw images: ``x`` uint8 (N, 3, 32, 32), ``y`` int64 (N,), and a name for the report."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    real: bool  # True for real images (CIFAR-10, digits, a user's), False for the stand-in
    mirror: bool = True     # a horizontal flip keeps the label (False: the crop alone augments)
    mean: tuple[float, ...] = CIFAR_MEAN    # per-channel normalization, on the 0–1 scale
    std: tuple[float, ...] = CIFAR_STD

    def subset(self, n: int) -> ImageData:
        return replace(self, x=self.x[:n], y=self.y[:n])


def data_dir_from_env(option: str | None) -> Path | None:
    value = option or os.environ.get(ENV_DATA_DIR)
    return Path(value).expanduser() if value else None


def cifar_root(data_dir: Path | None) -> Path:
    """The folder CIFAR-10 is read from: ``data_dir``, else torchvision's download target here."""
    return data_dir or Path("~/.cache/wd-claims/cifar10").expanduser()


def download_allowed(option: bool) -> bool:
    return option or os.environ.get(ENV_DOWNLOAD, "") not in ("", "0", "false", "no")


CIFAR_FOLDER = "cifar-10-batches-py"  # torchvision's folder inside the data directory
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
               "test_batch", "batches.meta")


def diagnose_data_dir(root: Path) -> str:
    """What is visibly wrong with ``root`` as a CIFAR-10 folder ("" if nothing is). Cheap: looks at
    names only; the md5 check (torchvision's) happens when the data are loaded."""
    root = Path(root)
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is not a folder"
    if root.name == CIFAR_FOLDER and not (root / CIFAR_FOLDER).exists():
        return f"{root} is the {CIFAR_FOLDER} folder itself; pass the folder that holds it"
    if not (root / CIFAR_FOLDER).is_dir():
        return f"{root} holds no {CIFAR_FOLDER} folder"
    missing = [f for f in CIFAR_FILES if not (root / CIFAR_FOLDER / f).is_file()]
    if missing:
        return f"{root / CIFAR_FOLDER} lacks {', '.join(missing)}"
    return ""


def load_cifar10(root: Path | None, *, train: bool, download: bool = False) -> ImageData:
    """CIFAR-10 from ``root`` through torchvision; :class:`DataUnavailable` with advice otherwise.

    Safety: torchvision unpickles the batch files, but only after their md5 sums match the
    published ones, so a corrupt or substituted file is rejected before it is unpickled.
    """
    if root is None:
        raise DataUnavailable(
            f"CIFAR-10 is not configured: pass --data-dir DIR (or set {ENV_DATA_DIR}) to a folder "
            f"holding {CIFAR_FOLDER}, and add --download to let torchvision fetch it")
    hint = "" if download else f"; add --download (or {ENV_DOWNLOAD}=1) to fetch it there"
    problem = "" if download else diagnose_data_dir(root)
    if problem:  # say precisely what is wrong rather than torchvision's generic message
        raise DataUnavailable(f"CIFAR-10 not found: {problem}{hint}")
    try:
        from torchvision.datasets import CIFAR10  # here: torchvision is slow to import
    except ImportError as exc:
        raise DataUnavailable(f"torchvision cannot be imported ({exc}); install it") from exc
    try:
        ds = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise DataUnavailable(
            f"CIFAR-10 under {root} fails torchvision's md5 integrity check (corrupt or "
            f"incomplete files: {exc}){hint}") from exc
    except OSError as exc:  # no network, permission denied, …
        raise DataUnavailable(
            f"CIFAR-10 could not be read or downloaded into {root}: {exc}") from exc
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) → NCHW
    return ImageData(x, torch.tensor(ds.targets, dtype=torch.int64),
                     f"CIFAR-10 {'train' if train else 'test'} (torchvision)", real=True)


def standin_cifar(n: int, *, seed: int = 0, train: bool = True, num_classes: int = 10) -> ImageData:
    """Deterministic CIFAR-shaped data with learnable class structure.

    Each class has a smooth random colour template (an 8×8 pattern upsampled to 32×32); an image is
    its class template, randomly shifted by up to 4 pixels and mirrored, blended 50/50 with smooth
    per-image noise. Classes are separable but not trivially so (a linear model is far from
    perfect). Train and test draw from the same templates with different per-image noise.
    """
    templates_gen = torch.Generator().manual_seed(1234 + seed)
    templates = torch.rand(num_classes, 3, 8, 8, generator=templates_gen)
    templates = torch.nn.functional.interpolate(templates, size=32, mode="bilinear",
                                                align_corners=False)
    gen = torch.Generator().manual_seed(seed * 2 + (0 if train else 1) + 99)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    noise = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=gen), size=32,
                                            mode="bilinear", align_corners=False)
    base = templates[y]
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    for i in range(n):  # generated once; cheap for the sizes used
        img = torch.roll(base[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
        base[i] = img.flip(2) if flips[i] else img
    x = (0.5 * base + 0.5 * noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    return ImageData(x, y, STANDIN_NAME, real=False)


@dataclass
class DeviceData:
    """Normalized float images and labels resident on one device."""

    x: torch.Tensor  # (N, 3, 32, 32) float32, normalized per channel
    y: torch.Tensor  # (N,) int64
    name: str
    real: bool
    mirror: bool = True     # as ImageData.mirror: the augmentation flips only when True

    @classmethod
    def from_images(cls, data: ImageData, device: torch.device | str = "cpu") -> DeviceData:
        mean = torch.tensor(data.mean).view(1, 3, 1, 1)
        std = torch.tensor(data.std).view(1, 3, 1, 1)
        x = ((data.x.float() / 255.0 - mean) / std).to(device)
        return cls(x, data.y.to(device), data.name, data.real, data.mirror)

    def head(self, n: int) -> DeviceData:
        """The first ``n`` images (all when n is 0 or at least their number)."""
        return self if not n or n >= len(self) else replace(self, x=self.x[:n], y=self.y[:n])

    def __len__(self) -> int:
        return self.x.shape[0]


def epoch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(steps, batch_size) int64 indices: consecutive epochs of random permutations (without
    replacement inside an epoch; the incomplete last batch of each epoch is dropped)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training images")
    epochs = -(-steps // per_epoch)
    perms = [torch.randperm(n, generator=generator)[: per_epoch * batch_size]
             for _ in range(epochs)]
    return torch.cat(perms).view(-1, batch_size)[:steps].to(device)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad`` zero padding and random horizontal flip, batched on x's device.

    x: (B, C, H, W) → (B, C, H, W). The random draws come from ``generator`` (on the CPU, so the
    same seed gives the same augmentation on every device).
    """
    shift, flip = augmentation_draws(generator, 1, x.shape[0], pad)
    return augment_drawn(x, shift[0].to(x.device), flip[0].to(x.device), pad)


def augmentation_draws(generator: torch.Generator, steps: int, batch: int, pad: int = 4
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, flip): (steps, batch, 2) int64 crop offsets in [0, 2·pad] and (steps, batch) bool
    flips, drawn on the CPU from ``generator`` for many steps at once, so that a training loop on
    CUDA copies them once per chunk of steps (non-blocking) instead of once per step."""
    shift = torch.randint(0, 2 * pad + 1, (steps, batch, 2), generator=generator)
    flip = torch.rand(steps, batch, generator=generator) < 0.5
    return shift, flip


def augment_drawn(x: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor, pad: int = 4
                  ) -> torch.Tensor:
    """:func:`augment` with given draws: shift (B, 2), flip (B,) on x's device."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (torch.arange(h, device=x.device).view(1, h) + shift[:, :1]).view(b, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, w)
    cols = torch.where(flip.view(b, 1), w - 1 - cols, cols) + shift[:, 1:]
    cols = cols.view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[bi, ci, rows, cols]


def resolve(data_dir: Path | None, *, download: bool, n_train: int, n_test: int,
            require_real: bool, seed: int = 0) -> tuple[ImageData, ImageData]:
    """(train, test) images: CIFAR-10 if it can be had, else the stand-in unless ``require_real``.

    Raises :class:`DataUnavailable` when CIFAR-10 is required and cannot be loaded, and also when a
    data folder was given explicitly but is broken (a broken folder is never silently replaced).
    """
    if data_dir is not None or download:
        root = cifar_root(data_dir)
        train = load_cifar10(root, train=True, download=download)
        test = load_cifar10(root, train=False, download=False)
        return train.subset(n_train), test.subset(n_test)
    if require_real:
        load_cifar10(None, train=True)  # raises with the advice
    return standin_cifar(n_train, seed=seed), standin_cifar(n_test, seed=seed, train=False)
