"""What the monitor records, and the exact algebra on it: per tracked tensor (or unit) five float64
inner products per recorded step and the hyperparameters in force (:class:`Records`), turned into
‖w‖², ‖g‖, cos(g, w), the angle θ_t, the radial and tangential parts of the update, the effective
learning rate (:func:`series`) and the optimizer's predicted angle (:func:`predicted_theta`).

Recorded by :class:`wd_claims.monitor.Monitor`; judged by :mod:`wd_claims.monitor_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wd_claims import optimizers

GRAM = ("ww", "wv", "vv", "gg", "gw")   # the recorded inner products (module docstring)
HYPER = ("lr", "weight_decay", "momentum", "beta2")


@dataclass(frozen=True)
class Tracked:
    """One tracked tensor: its name, parameter group, rule, and its rows in the record."""

    name: str
    shape: tuple[int, ...]
    group: int
    rule: str | None          # wd_claims.optimizers.RULES entry, None: no prediction derived
    rule_note: str            # the convention, or why the prediction is missing
    rows: slice               # its rows (one per unit, or one) in Records.gram's second axis


@dataclass
class Records:
    """Everything a monitor recorded, on the host. steps: (T,) optimizer steps (0-based);
    gram: (T, R, 5) float64, GRAM order (NaN where the step was skipped); hyper: (T, n_groups, 4)
    float64, HYPER order; skipped: (T,) bool, steps whose update did not happen (AMP's GradScaler
    found an inf: a fused optimizer's step ran its hooks but left the weights)."""

    tracked: list[Tracked]
    steps: np.ndarray
    gram: np.ndarray
    hyper: np.ndarray
    optimizer: str
    every: int
    units: bool
    decoupled_weight_decay: float | None = None
    missing_grad: dict[str, int] = field(default_factory=dict)   # name → recorded steps
    skipped: np.ndarray | None = None

    def hyper_for(self, t: Tracked) -> np.ndarray:
        """(T, 4): the tensor's group's (η, weight_decay, μ or β₁, β₂); for ``sgdw`` the
        weight_decay column is the decoupled λ_w given to the monitor (torch's SGD has none)."""
        h = self.hyper[:, t.group].copy()
        if t.rule == "sgdw":
            h[:, 1] = self.decoupled_weight_decay
        return h


def series(rec: Records, t: Tracked, per_unit: bool = False) -> dict[str, np.ndarray]:
    """The derived per-step quantities of one tracked tensor, (T,) each ((T, units) with
    ``per_unit``): x = ‖w_t‖², grad_norm, cos_gw, theta (atan2 of the exact sine and cosine, no
    arccos rounding), radial = ⟨Δ, ŵ⟩ and tangential = ‖Δ − ⟨Δ, ŵ⟩ŵ‖ (Δ = w_{t+1} − w_t), their
    ratio to ‖w_t‖ (relative), the effective learning rate (``optimizers.effective_lr_kind``)."""
    g = rec.gram[:, t.rows]                       # (T, units, 5)
    if not per_unit:
        g = g.sum(axis=1)                          # inner products add over units
    ww, wv, vv, gg, gw = (g[..., k] for k in range(len(GRAM)))
    sine = np.sqrt(np.maximum(ww * vv - wv * wv, 0.0))
    radial = (wv - ww) / np.sqrt(ww)
    step_sq = np.maximum(ww - 2 * wv + vv, 0.0)
    h = rec.hyper_for(t)
    lr = h[:, 0] if not per_unit else h[:, :1]
    kind = optimizers.effective_lr_kind(t.rule)
    return {"x": ww, "grad_norm": np.sqrt(gg), "cos_gw": gw / np.sqrt(gg * ww),
            "theta": np.arctan2(sine, wv), "radial": radial,
            "tangential": np.sqrt(np.maximum(step_sq - radial**2, 0.0)),
            "relative_radial": radial / np.sqrt(ww),
            "eff_lr": lr / ww if kind == "eta/|w|^2" else lr / np.sqrt(ww)}


def predicted_theta(rec: Records, t: Tracked, rule: str | None = None) -> np.ndarray:
    """(T,) θ* at each recorded step from the hyperparameters in force then (NaN: none)."""
    rule = rule or t.rule
    if rule is None:
        return np.full(len(rec.steps), np.nan)
    # η = 0 (a schedule's end): no update, nothing to predict
    return np.array([optimizers.predicted_angle(rule, optimizers.Hyper(*row)) if row[0] > 0
                     else np.nan for row in rec.hyper_for(t)])


def tracking_theta(rec: Records, t: Tracked) -> np.ndarray:
    """(T,) the angle the rule predicts along the run, schedule included: from the recorded start
    norm, the rule's norm recursion (:func:`wd_claims.optimizers.recursion`) is iterated with the
    hyperparameters in force at each step and the measured G (or update size U), and
    θ_t = θ*_t·(x*_t/x̂_t)^power. At constant hyperparameters and x̂ at its fixed point this is
    θ*; while the norm relaxes (τ steps) or lags a schedule it is what the theory predicts then.
    Steps between records (``every`` > 1) advance x̂ with the last record's G or U."""
    rule = t.rule
    n = len(rec.steps)
    out = np.full(n, np.nan)
    if rule is None or n == 0:
        return out
    g = rec.gram[:, t.rows].sum(axis=1)
    ww, wv, vv, gg = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
    h = rec.hyper_for(t)
    skipped = rec.skipped if rec.skipped is not None else np.zeros(n, dtype=bool)
    star = predicted_theta(rec, t)
    finite = np.flatnonzero(np.isfinite(ww))
    if len(finite) == 0:
        return out
    x_hat = ww[finite[0]]
    for i in range(finite[0], n):
        hyper = optimizers.Hyper(*h[i])
        if hyper.weight_decay <= 0 or hyper.lr <= 0 or not np.isfinite(star[i]) or skipped[i]:
            continue
        r = optimizers.recursion(rule, hyper)
        if r.family == "gradient":
            drive = gg[i] * ww[i]                                   # G²
            x_star = np.sqrt(r.B * drive / (1 - r.A))
        else:
            a = 1 - hyper.lr * hyper.weight_decay
            # U² = ‖u‖² ≥ 0 (rounding can take a tiny step's difference below 0)
            drive = max(a * a * ww[i] - 2 * a * wv[i] + vv[i], 0.0) / hyper.lr**2
            x_star = r.B * drive / (1 - r.A)
        if not np.isfinite(drive):      # a missing gradient: this step cannot advance x̂
            continue
        if x_star > 0 and x_hat > 0:
            out[i] = star[i] * (x_star / x_hat) ** r.power
        for _ in range(rec.every):
            x_hat = r.A * x_hat + (r.B * drive / x_hat if r.family == "gradient" else r.B * drive)
    return out
