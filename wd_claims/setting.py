"""What a verdict stands on: the setting of its runs, and every deviation from the article's Fig. 2.

The article's Fig. 2 (Labatie 2020): ResNet-8 (width 16) on CIFAR-10, plain SGD, batch 128, 100
epochs, every parameter training from the default initialization, a grid of (η, λ). A verdict's
``setting`` (rendered in its report section) says the same things of the measurement it judged,
and :func:`deviations` lists, in words, where the two differ. Built from the
:class:`~wd_claims.train.TrainConfig` itself, so the report cannot describe a run other than the
one trained.
"""

from __future__ import annotations

from types import MappingProxyType

ARTICLE_EPOCH = 391   # steps per epoch of Fig. 2: CIFAR-10's 50,000 images at batch 128
FIG2 = MappingProxyType({"model": "resnet8", "width": 16, "data": "CIFAR-10", "batch": 128,
                         "steps": 39_100, "momentum": 0.0})


def of_run(config, data_name: str, augmented: float | None = None,
           flipped: float | None = None, **extra) -> dict:
    """The setting of a training run (``config``: a TrainConfig) on data ``data_name``;
    ``augmented`` / ``flipped``: the fractions of its training images the augmentation changed /
    mirrored, as the engine measured them (``TrainResult``): the setting says what ran, not what
    was asked."""
    scales = sorted(set(config.init_scales or (1.0,)))
    setting = {
        "model": config.model, "width": config.width, "data": data_name,
        "steps": config.steps, "batch": config.batch_size,
        "trains": ("the scale-invariant tensors only (classifier and normalization affine "
                   "parameters frozen at init)" if config.freeze_non_invariant
                   else "every parameter"),
        "start": "default init" if scales == [1.0] else
                 "default init with the scale-invariant tensors ×" + ", ×".join(f"{s:g}"
                                                                         for s in scales),
        "precision": f"{config.dtype}, {config.precision}" if config.precision != "float32"
                     else config.dtype,
        "seeds": [config.seed],
        "optimizer": ("plain SGD" if config.momentum == 0 else
                      f"SGD, momentum {config.momentum:g} (coupled decay)")
                     + ", weight_decay = 2λ",
        "augment": augmentation(config.augment, augmented, flipped),
    }
    setting.update(extra)
    setting["deviations"] = deviations(setting)
    return setting


def augmentation(configured: bool, measured: float | None, flipped: float | None = None) -> str:
    """The augmentation that ran, in words: the measured fraction of changed training images
    decides; what was configured is said where the two disagree or nothing was measured. A
    measured ``flipped`` of 0 (as on data that is not mirror-symmetric) makes it the crop alone;
    the measurement says what ran, not why."""
    if configured and flipped == 0 and measured:
        return (f"random crop (pad 4) only, no flip: {100 * measured:.1f} % of the training "
                "images changed, 0 mirrored (measured)")
    asked = "random crop (pad 4) + flip" if configured else "none"
    if measured is None or measured != measured:       # not measured (NaN)
        return f"{asked} (configured; not measured)"
    if measured == 0:
        return "none" + (" — configured random crop (pad 4) + flip, but no training image "
                         "was changed (measured)" if configured else "")
    return (f"random crop (pad 4) + flip, {100 * measured:.1f} % of the training images "
            "changed (measured)" if configured else
            f"{100 * measured:.1f} % of the training images changed although none was "
            "configured (measured)")


def merge(settings: list[dict]) -> dict:
    """One setting for a verdict judged on several runs (seeds, grids): equal entries once, the
    rest listed (seeds joined)."""
    if not settings:
        return {}
    out = {}
    for key in settings[0]:
        values = [s.get(key) for s in settings]
        if key == "seeds":
            out[key] = sorted({seed for s in settings for seed in s.get("seeds", [])})
        elif key == "deviations":
            out[key] = list(dict.fromkeys(d for s in settings for d in s.get(key, [])))
        elif all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            out[key] = " / ".join(dict.fromkeys(str(v) for v in values))
    return out


def probe(model: str, data_name: str, batch: int, dtype: str = "float64", **extra) -> dict:
    """The setting of a geometry probe (no training): model, data, batch, precision."""
    setting = {"model": model, "data": data_name, "batch": batch, "steps": 0,
               "trains": "nothing (probes at initialization and along a few SGD steps)",
               "precision": dtype, **extra}
    setting["deviations"] = [d for d in deviations(setting) if "steps" not in d]
    return setting


def deviations(setting: dict) -> list[str]:
    """Every difference, in words, between ``setting`` and the article's Fig. 2 setting."""
    out = []
    if setting.get("model") != FIG2["model"]:
        out.append(f"model {setting.get('model')} instead of ResNet-8")
    elif setting.get("width", FIG2["width"]) != FIG2["width"]:
        out.append(f"ResNet-8 at width {setting.get('width')} instead of 16")
    data = str(setting.get("data", ""))
    if not data.startswith(FIG2["data"]):
        out.append(f"data: {data.split(' (')[0]} instead of CIFAR-10")
    if "batch" in setting and setting["batch"] != FIG2["batch"]:
        out.append(f"batch {setting['batch']} instead of 128")
    if "steps" in setting and setting["steps"] != FIG2["steps"]:
        out.append(f"{setting['steps']} steps instead of 39,100 (100 epochs)")
    if str(setting.get("trains", "")).startswith("the scale-invariant tensors only"):
        out.append("only the scale-invariant tensors train (classifier and normalization affine "
                   "frozen)")
    if str(setting.get("start", "default init")) != "default init":
        out.append(f"start: {setting['start']}")
    if "w" in setting and setting["w"] != "all 3x3 conv kernels":
        out.append(f"w = {setting['w']} (the model has no 3x3 conv kernel; Fig. 2's w is every "
                   "3x3 kernel)")
    augment = str(setting.get("augment", "random crop (pad 4) + flip"))
    if not augment.startswith("random crop (pad 4) + flip"):
        out.append(f"augmentation: {augment.split(':')[0]} instead of random crop (pad 4) + flip")
    optimizer = str(setting.get("optimizer", "plain SGD"))
    if not optimizer.startswith("plain SGD"):
        out.append(f"optimizer: {optimizer}")
    return out
