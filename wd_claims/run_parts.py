"""The parts of a training run that the loop of copies (:mod:`wd_claims.train`) and the fused path
(:mod:`wd_claims.fused`) share: the batch stream, the final evaluation, the progress bar and the
tensors a run tracks. Both import this module; neither imports the other's internals.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wd_claims.data import DeviceData, augment_drawn, augmentation_draws, epoch_indices
from wd_claims.replicas import tracked_tensors
from wd_claims.run_config import CHUNK, DTYPES, EVAL_BATCH, TrainConfig, build_model
from wd_claims.zoo import MODELS

# --- data ------------------------------------------------------------------------------------

def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one random stream (1: batch order, 2: augmentation) of ``seed``;
    distinct from the initialization's ``torch.manual_seed(seed)``."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def batch_stream(config: TrainConfig, data: DeviceData, tally: dict | None = None):
    """Yields (x, y) for steps 0 … T−1, the same for every configuration and every run with this
    seed: shuffled epochs (``wd_claims.data.epoch_indices``), augmented on the device when
    ``config.augment``. x: (B, 3, 32, 32) in ``config.dtype``, y: (B,) int64.

    No host synchronization per step: the batch order is drawn for the whole run, the
    augmentation for CHUNK steps at a time, each moved to the device in one (pinned, non-blocking
    on CUDA) copy.

    ``tally`` (a dict, filled in place): ``changed``, the images whose pixels differ from the data
    set's (a device tensor: no synchronization), ``flipped``, those mirrored, and ``images``, all
    the images streamed; what :func:`augmented_fraction` reads, so that a setting states what
    ran, not what was asked."""
    device = data.x.device
    order = epoch_indices(len(data), config.batch_size, config.steps, _generator(config.seed, 1),
                          device)
    aug = _generator(config.seed, 2)
    dtype = DTYPES[config.dtype]
    cuda = device.type == "cuda"
    for start in range(0, config.steps, CHUNK):
        n = min(CHUNK, config.steps - start)
        if config.augment:
            shift, flip = augmentation_draws(aug, n, config.batch_size)
            flip &= data.mirror         # digits are not mirror-symmetric: the crop alone
            if cuda:
                shift, flip = shift.pin_memory(), flip.pin_memory()
            shift, flip = shift.to(device, non_blocking=cuda), flip.to(device, non_blocking=cuda)
        for i in range(n):
            idx = order[start + i]
            x = data.x[idx]
            if config.augment:
                x = augment_drawn(x, shift[i], flip[i])
            if tally is not None:
                changed = (x != data.x[idx]).flatten(1).any(1).sum()
                tally["changed"] = tally.get("changed", 0) + changed
                tally["images"] = tally.get("images", 0) + x.shape[0]
                if config.augment:
                    tally["flipped"] = tally.get("flipped", 0) + flip[i].sum()
            yield x.to(dtype), data.y[idx]


def augmented_fraction(tally: dict, what: str = "changed") -> float:
    """The fraction of the streamed training images that the augmentation changed (``what`` =
    "changed") or mirrored ("flipped"); NaN: none streamed."""
    images = tally.get("images", 0)
    return float(tally.get(what, 0)) / images if images else float("nan")


def evaluation_sets(config: TrainConfig, train_data: DeviceData,
                    test_data: DeviceData | None) -> dict[str, DeviceData]:
    """{"train_eval": …, "test": …}: what the final evaluation reads, the first
    ``config.eval_images`` images of each set when that is set (0: all)."""
    n = config.eval_images

    sets = {"train_eval": train_data.head(n)}
    if test_data is not None:
        sets["test"] = test_data.head(n)
    return sets


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, channels_last: bool = False,
             precision: str = "float32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``, BN in eval mode; mode restored.
    ``precision``: as ``TrainConfig.precision`` (the forward pass under bf16 autocast or not)."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    loss = torch.zeros((), dtype=torch.float64, device=data.x.device)
    correct = torch.zeros((), dtype=torch.long, device=data.x.device)
    for i in range(0, len(data), EVAL_BATCH):
        x = data.x[i: i + EVAL_BATCH].to(dtype=dtype, memory_format=fmt)
        y = data.y[i: i + EVAL_BATCH]
        with torch.autocast(x.device.type, dtype=torch.bfloat16,
                            enabled=precision == "bf16-autocast"):
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
    model.train(was_training)
    return float(loss) / len(data), float(correct) / len(data)


def progress_bar(config: TrainConfig, enabled: bool):
    """A tqdm bar over the run's steps (quiet when stderr is not a terminal, or not ``enabled``)."""
    from tqdm import tqdm

    # disable=None: tqdm stays quiet when stderr is not a terminal (CI logs, pytest capture)
    return tqdm(total=config.steps, disable=None if enabled else True, file=sys.stderr,
                desc=f"{config.model} K={config.k}", unit="step", leave=False)


@functools.lru_cache(maxsize=64)
def _tracked(spec, model: str, width: int, seed: int, norm_eps: float | None,
             dtype: str) -> tuple[list[str], list[str]]:
    config = TrainConfig(etas=(0.1,), lams=(0.0,), steps=1, model=model, width=width,
                         seed=seed, norm_eps=norm_eps, dtype=dtype,
                         spec=None if spec is MODELS.get(model) else spec)
    return tracked_tensors(build_model(config), spec.input_shape)


def tracked_for(config: TrainConfig) -> tuple[list[str], list[str]]:
    """(scale-invariant tensors, 3x3 kernels among them) of the network ``config`` builds,
    probed once per process (the probe costs 1.4–2.7 s, a third of a short run, and its answer
    is a function of the spec, width, seed, eps and dtype; the spec is in the key so that a
    model of another factory under the same name is probed again)."""
    return _tracked(config.model_spec, config.model, config.width, config.seed, config.norm_eps,
                    config.dtype)
