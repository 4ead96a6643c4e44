"""Decoupled weight decay (E2): SGDW and AdamW runs outside the engine, measured per unit.

The engine (:mod:`wd_claims.train`) trains coupled SGD only; E2 needs decoupled decay,
w_{t+1} = (1 − ηλ_w)w_t − η·update, as PyTorch's ``AdamW(weight_decay=λ_w)`` applies it (SGDW: the
decay as a step pre-hook before ``SGD(momentum=μ)``). A plain loop over the engine's batch stream
trains the model's scale-invariant tensors only; the training-run monitor (:mod:`wd_claims.monitor`)
records, per step and unit, the Gram entries of (w_t, w_{t+1}) that every series here is read from.
A unit is one output channel's kernel where every normalization is a BatchNorm (each channel
normalized by itself: per-unit scale invariance), else one whole scale-invariant tensor.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wd_claims import setting
from wd_claims.data import DeviceData
from wd_claims.invariance import NoScaleInvariantTensor, scale_invariant_names
from wd_claims.monitor import GRAM, Monitor
from wd_claims.run_config import TrainConfig
from wd_claims.run_parts import augmented_fraction, batch_stream

NORMALIZATIONS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
                  nn.modules.instancenorm._InstanceNorm)
BETA2 = 0.99   # PyTorch's 0.999 averages over 1,000 steps, longer than a CPU run
OPTIMIZER = MappingProxyType({
    "sgdw": "torch.optim.SGD(lr=η, momentum=μ) after w ← (1 − ηλ_w)w (SGDW)",
    "adamw": f"torch.optim.AdamW(lr=η, weight_decay=λ_w, betas=(β₁, {BETA2}))"})
SERIES = ("theta2", "logx", "radial", "cos_uw", "rho", "r2")


def train_decoupled(kind: str, mu: float, eta: float, lam_w: float, budget, train: DeviceData,
                    spec) -> dict:
    """One run of ``kind`` ∈ {"sgdw", "adamw"}; only the scale-invariant kernels train. Per step
    t, over the J units: θ²_t = mean_j θ_{j,t}² (θ_{j,t} the angle between w_{j,t} and w_{j,t+1}),
    the mean of log ‖w_{j,t}‖², and the radial share of the update u = (a·w_t − w_{t+1})/η: mean
    |cos(u_j, w_j)| and mean signed cos(u_j, w_j); and what the norm balance needs (its average
    over units is exact in these two): rho = mean_j η⟨u_j, w_j⟩/‖w_j‖² (the radial step) and
    r2 = mean_j η²‖u_j‖²/‖w_j‖²."""
    steps = budget.cap_steps(budget.decoupled_steps)
    # the batch stream only (seed, batch, steps, augmentation); the model is built here
    tc = TrainConfig(etas=(eta,), lams=(0.0,), steps=steps, batch_size=budget.batch_size,
                     model="conv_groupnorm", seed=budget.seeds[0], augment=budget.augment,
                     evaluate=False)
    torch.manual_seed(budget.seeds[0])
    model = spec.build()
    names = scale_invariant_names(model, spec.input_shape)
    if not names:
        raise NoScaleInvariantTensor(f"{spec.name} has no scale-invariant tensor")
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in names)
    params = [named[n] for n in names]
    per_unit = all(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in model.modules()
                   if isinstance(mod, NORMALIZATIONS))
    if kind == "adamw":
        opt = torch.optim.AdamW(params, lr=eta, weight_decay=lam_w, betas=(mu, BETA2))
    else:  # SGDW: decay first, then the momentum step with the gradient taken at w_t
        opt = torch.optim.SGD(params, lr=eta, momentum=mu)
    a = 1 - eta * lam_w
    # the measurement is the training-run monitor's: the suite and the monitor cannot disagree.
    # Its pre-hook snapshots w_t; SGDW's decay is a pre-hook after it.
    monitor = Monitor(model, opt, tensors=names, units=per_unit,
                      rule="sgdw" if kind == "sgdw" else "adamw",
                      decoupled_weight_decay=lam_w if kind == "sgdw" else None)
    if kind == "sgdw":
        def decay(*_):
            with torch.no_grad():
                for p in params:
                    p.mul_(a)

        opt.register_step_pre_hook(decay)
    tally: dict = {}
    for x, y in batch_stream(tc, train, tally):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    monitor.close()
    rec = monitor.records()
    ww, wv, vv = (rec.gram[:, :, GRAM.index(k)] for k in ("ww", "wv", "vv"))  # (T, units)
    uw = (a * ww - wv) / eta                       # ⟨u_j, w_j⟩, u = (a·w_t − w_{t+1})/η
    uu = (a * a * ww - 2 * a * wv + vv) / eta**2   # ‖u_j‖²
    theta = np.arctan2(np.sqrt(np.maximum(ww * vv - wv * wv, 0)), wv)
    cos_uw = uw / np.sqrt(uu * ww)
    out = {"theta2": (theta**2).mean(1), "logx": np.log(ww).mean(1),
           "radial": np.abs(cos_uw).mean(1), "cos_uw": cos_uw.mean(1),
           "rho": (eta * uw / ww).mean(1), "r2": (eta**2 * uu / ww).mean(1)}
    out["units"] = int(theta.shape[1])
    out["augmented"] = augmented_fraction(tally)
    out["flipped"] = augmented_fraction(tally, "flipped")
    out["unit_kind"] = ("one output channel's kernel (per-channel BatchNorm)" if per_unit
                        else "one whole scale-invariant tensor (the model's normalizations are "
                             "not per channel)")
    return out


def measure_decoupled(kind: str, configs, budget, images, spec) -> dict:
    """Every (μ or β₁, η, λ_w) of ``configs``, on the training images of ``images`` (converted
    once, on the CPU): (K,) mu, eta, lam_w and (K, T) theta2, logx, radial, cos_uw, rho, r2 (see
    :func:`train_decoupled`), with what the setting is made of."""
    train = DeviceData.from_images(images[0])
    runs = [train_decoupled(kind, mu, eta, lw, budget, train, spec) for mu, eta, lw in configs]
    m = {key: np.array([c[i] for c in configs], dtype=float)
         for i, key in enumerate(("mu", "eta", "lam_w"))}
    m.update({key: np.array([r[key] for r in runs]) for key in SERIES})
    m.update(kind=kind, units=runs[0]["units"], unit_kind=runs[0]["unit_kind"],
             model=f"{spec.name}-{kind}", data=images[0].name, batch=budget.batch_size,
             seed=budget.seeds[0], augment=int(bool(budget.augment)),
             augmented=float(np.mean([r["augmented"] for r in runs])),
             flipped=float(np.mean([r["flipped"] for r in runs])))
    return m


def radial_share(rho, r2) -> float:
    """c, the radial share the norm balance needs over some steps: mean ρ/√(mean r²) over the
    steps and units (ρ = η⟨u,w⟩/‖w‖², r² = η²‖u‖²/‖w‖²), so that the unit-averaged balance
    mean e^δ = a² − 2a·c·r_rms + r_rms² is exact; not the mean of cos(u_j, w_j), which weights
    every unit alike whatever its step."""
    return np.mean(rho) / np.sqrt(np.mean(r2))


def measurement_notes(m: dict) -> tuple[str, str, str, str]:
    """The report's notes on the measurements ``m``: the optimizer, the unit, what trains, and
    which radial share the balance reads."""
    return (f"optimizer: {OPTIMIZER[str(m['kind'])]}",
            f"measured per unit: each of the {m['units']} output channels of the two 3x3 kernels "
            "feeds its own BatchNorm channel, so its weight vector is scale-invariant (Kosson et "
            "al.'s unit); θ_rms = √(mean over units and steps of θ²)",
            "only the scale-invariant kernels train (classifier and BatchNorm affine frozen)",
            "mean |cos(u, w)| and mean cos(u, w) (every unit alike) are reported; the balance "
            "needs c = mean ρ/√(mean r²), which weights each unit by its step")


def run_setting(m: dict) -> dict:
    """The setting of the measurements ``m`` of :func:`measure_decoupled`."""
    s = {"model": str(m["model"]).rsplit("-", 1)[0], "units": str(m["unit_kind"]),
         "data": m["data"],
         "steps": int(m["theta2"].shape[1]), "batch": int(m["batch"]),
         "trains": "the scale-invariant tensors only (classifier and normalization affine "
                   "parameters frozen at init)", "start": "default init", "precision": "float32",
         "seeds": [int(m["seed"])], "optimizer": OPTIMIZER[str(m["kind"])],
         "augment": setting.augmentation(bool(m["augment"]), float(m.get("augmented", "nan")),
                                          float(m.get("flipped", "nan")))}
    s["deviations"] = setting.deviations(s)
    return s
