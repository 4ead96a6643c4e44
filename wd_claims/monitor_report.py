"""Verdicts, report and figure for :class:`wd_claims.monitor.Monitor`'s records.

Criterion, fixed before measuring (the defaults; a user may fix others before a run): the last
``window`` recorded steps are cut into blocks of twice the residual's measured integrated
autocorrelation time (at least ``window // blocks`` steps; :mod:`wd_claims.monitor_stats`); each
block's residual is log(θ_rms/θ*_rms); a window is *inside* when the blocks' 95 % t-interval of the
mean residual lies inside ±log(1 + tolerance) — an equivalence test, so a noisy window cannot pass
by being wide. Two predictions are judged so, separately:

- **steady state** θ*: the rule's rotational equilibrium at the hyperparameters in force.
  Windows slide by one block; a tensor *reached* equilibrium at the first window end after which
  every window is inside; its verdict is *equilibrium*, *left equilibrium* (some earlier window was
  inside), or, never inside, *off prediction* (wholly outside the band) or *unresolved*.
- **tracking**: the angle the rule's norm recursion predicts along the run from the recorded start
  norm, schedule included (:func:`wd_claims.monitor_records.tracking_theta`): *tracks*, *off the
  tracked prediction* or *unresolved* on the last window. Under a schedule that moves faster than
  the relaxation time τ a tensor can track without being at a steady state.

Default tolerance 10 %: the formulas are exact steady states of the update rules under their stated
assumptions; the reference runs (:mod:`wd_claims.monitor_reference`) measure every rule within 5 %
where those hold. A tensor whose gradient keeps a radial component is *not scale-invariant*: median
|cos(g, w)|·√n > ``radial_tolerance`` (n entries; a gradient unrelated to w has |cos| ≈ 0.67/√n, a
scale-invariant one measures ≤ 5e-3/√n in float32). The negative control is the same criterion
with the λ-convention slip (weight_decay halved: θ* off by ≈ √2 at every hyperparameter of every
rule); it is *rejected* only when its interval lies wholly outside the band.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from wd_claims import optimizers
from wd_claims.monitor_records import Records, Tracked, predicted_theta, series, tracking_theta
from wd_claims.monitor_stats import (
    MIN_BLOCKS,
    block_size,
    inside,
    interval,
    outside,
    window_residuals,
)

WINDOW, BLOCKS, TOLERANCE, LEVEL = 512, 16, 0.10, 0.95
RADIAL_TOLERANCE = 0.1   # median |cos(g, w)|·√n (module docstring)
CONTROL_TEXT = "the same rule with weight_decay halved (the λ-convention slip; θ* ÷ ≈√2)"


@dataclass
class TensorVerdict:
    """One tracked tensor's verdict; ratio = exp(mean residual) of the last window [its CI]."""

    name: str
    rule: str | None
    status: str               # equilibrium | left equilibrium | off prediction | unresolved |
                              # not scale-invariant | no prediction | no decay | too short
    ratio: float = math.nan
    ratio_ci: tuple[float, float] = (math.nan, math.nan)
    theta: float = math.nan   # last window's RMS angle (rad)
    theta_pred: float = math.nan
    reached_step: int | None = None
    tau: float = math.nan     # predicted relaxation time (steps) at the last step
    control_rejected: bool | None = None
    control: str = ""
    radial: float = math.nan  # median |cos(g, w)|·√n
    windows_inside: str = ""  # "inside/all" sliding windows
    tracking: str = ""        # tracks | off the tracked prediction | unresolved
    track_ratio: float = math.nan
    track_ci: tuple[float, float] = (math.nan, math.nan)
    block: float = math.nan   # block length (recorded steps) and the measured τ_int behind it
    tau_int: float = math.nan
    note: str = ""


def _judge_window(theta, pred, window, block):
    """(mean, low, high) of the last window, or None when it holds too few blocks."""
    wins = window_residuals(theta, pred, window, block)
    if not wins or window // block < MIN_BLOCKS:
        return None, wins
    return interval(wins[-1][1]), wins


def judge_tensor(rec: Records, t: Tracked, *, window: int = WINDOW, blocks: int = BLOCKS,
                 tolerance: float = TOLERANCE, radial_tolerance: float = RADIAL_TOLERANCE
                 ) -> TensorVerdict:
    """A pure function of the records: see the module docstring."""
    s = series(rec, t)
    n = int(np.prod(t.shape))
    cos = np.abs(s["cos_gw"][np.isfinite(s["cos_gw"])])
    radial = float(np.median(cos) * math.sqrt(n)) if len(cos) else math.nan
    v = TensorVerdict(t.name, t.rule, "", radial=radial, note=t.rule_note)
    if np.isfinite(radial) and radial > radial_tolerance:
        v.status = "not scale-invariant"
        v.note = (f"median |cos(g, w)|·√n = {radial:.2g} > {radial_tolerance:g}: a radial "
                  "gradient")
        return v
    if t.rule is None:
        v.status = "no prediction"
        return v
    h = rec.hyper_for(t)
    if len(h) and h[-1, 1] <= 0:
        v.status = "no decay"
        v.note = "weight decay 0: no equilibrium (the norm grows, C4)"
        return v
    if len(rec.steps) < window:
        v.status = "too short"
        v.note = f"{len(rec.steps)} recorded steps < window {window}"
        return v
    theta, pred, track = s["theta"], predicted_theta(rec, t), tracking_theta(rec, t)
    v.tau = optimizers.relaxation_steps(t.rule, optimizers.Hyper(*h[-1]))
    _judge_tracking(v, theta, track, window, blocks, tolerance)
    block, v.tau_int = block_size(theta, pred, window, blocks)
    v.block = block
    last, wins = _judge_window(theta, pred, window, block)
    if last is None:
        v.status = "unresolved"
        v.note = (f"the residual is autocorrelated over τ_int = {v.tau_int:.0f} steps: blocks of "
                  f"{block} leave {window // block} < {MIN_BLOCKS} in the window of {window}; a "
                  f"window of ≥ {MIN_BLOCKS * block} recorded steps decides")
        return v
    ok = [inside(interval(r), tolerance) for _, r in wins]
    mean, lo, hi = last
    v.ratio, v.ratio_ci = math.exp(mean), (math.exp(lo), math.exp(hi))
    span = slice(wins[-1][0] - window // block * block, wins[-1][0])
    v.theta = float(np.sqrt(np.nanmean(theta[span] ** 2)))
    v.theta_pred = float(np.sqrt(np.nanmean(pred[span] ** 2)))
    v.windows_inside = f"{sum(ok)}/{len(ok)}"
    if ok[-1]:
        first = len(ok) - next(i for i, good in enumerate(reversed(ok)) if not good) \
            if not all(ok) else 0
        v.status, v.reached_step = "equilibrium", int(rec.steps[wins[first][0] - 1])
    elif any(ok):
        v.status = "left equilibrium"
        v.reached_step = int(rec.steps[wins[ok.index(True)][0] - 1])
        v.note = (f"a window was inside first at step {v.reached_step}; the last is outside (e.g. "
                  "a schedule moving faster than the relaxation time τ: the angle lags)")
    elif outside(last, tolerance):
        v.status = "off prediction"
        v.note = "the last window's interval lies wholly outside the band"
    else:
        v.status = "unresolved"
        v.note = ("the last window's interval straddles the band's edge: too noisy to decide at "
                  "this tolerance (a longer window narrows it)")
    control = predicted_theta(_halved(rec, t), t)
    v.control = CONTROL_TEXT
    ctrl, _ = _judge_window(theta, control, window, block)
    v.control_rejected = ctrl is not None and outside(ctrl, tolerance)
    return v


def _judge_tracking(v: TensorVerdict, theta, track, window, blocks, tolerance) -> None:
    """The tracking verdict on the last window, its blocks sized from its own residual."""
    block, tau = block_size(theta, track, window, blocks)
    tracked, _ = _judge_window(theta, track, window, block)
    if tracked is None:
        v.tracking = f"unresolved (τ_int {tau:.0f})"
        return
    v.track_ratio = math.exp(tracked[0])
    v.track_ci = (math.exp(tracked[1]), math.exp(tracked[2]))
    v.tracking = "tracks" if inside(tracked, tolerance) else (
        "off the tracked prediction" if outside(tracked, tolerance) else "unresolved")


def _halved(rec: Records, t: Tracked) -> Records:
    """The records with the tensor's weight decay halved (the control): its group's column, or
    the decoupled λ_w a ``sgdw`` monitor was given."""
    hyper = rec.hyper.copy()
    hyper[:, t.group, 1] /= 2
    wd = rec.decoupled_weight_decay
    return replace(rec, hyper=hyper, decoupled_weight_decay=None if wd is None else wd / 2)


def judge_records(rec: Records, **criterion) -> list[TensorVerdict]:
    """One verdict per tracked tensor."""
    return [judge_tensor(rec, t, **criterion) for t in rec.tracked]


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def summary_table(verdicts: list[TensorVerdict]) -> str:
    """A markdown table (readable in a terminal) of the verdicts."""
    rows = ["| tensor | rule | θ (rad) | θ* (rad) | θ/θ* [95 % CI] | verdict | reached at step | "
            "windows inside | tracking θ/θ_track [95 % CI] | block (τ_int) | control rejected |",
            "|---|---|---:|---:|---|---|---:|---:|---|---:|---|"]
    for v in verdicts:
        ci = "—" if not np.isfinite(v.ratio) else \
            f"{v.ratio:.3f} [{v.ratio_ci[0]:.3f}, {v.ratio_ci[1]:.3f}]"
        ctrl = "—" if v.control_rejected is None else ("yes" if v.control_rejected else "**NO**")
        track = "—" if not np.isfinite(v.track_ratio) else \
            f"{v.tracking}: {v.track_ratio:.3f} [{v.track_ci[0]:.3f}, {v.track_ci[1]:.3f}]"
        block = "—" if not np.isfinite(v.block) else f"{v.block:.0f} ({v.tau_int:.0f})"
        rows.append(f"| {v.name} | {v.rule or '—'} | {_fmt(v.theta)} | {_fmt(v.theta_pred)} | "
                    f"{ci} | {v.status} | {v.reached_step if v.reached_step is not None else '—'}"
                    f" | {v.windows_inside or '—'} | {track} | {block} | {ctrl} |")
    return "\n".join(rows)


def progress_line(rec: Records) -> str:
    """One line for a long run: the step and the median θ/θ* over tensors, last 64 records."""
    ratios = []
    for t in rec.tracked:
        s, p = series(rec, t)["theta"][-64:], predicted_theta(rec, t)[-64:]
        if np.isfinite(p).any():
            ratios.append(float(np.sqrt(np.nanmean(s**2)) / np.sqrt(np.nanmean(p**2))))
    med = f"{np.median(ratios):.3f}" if ratios else "—"
    return (f"wd_claims.monitor: step {int(rec.steps[-1]) if len(rec.steps) else 0}, "
            f"{len(rec.tracked)} tensors, median θ/θ* (last 64 records) {med}")


def figure(rec: Records, path: Path, max_panels: int = 6) -> Path:
    """Each tensor's angle (RMS over blocks of 16 records) and its prediction over training, one
    panel per group of layers (the name's first component)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Tracked]] = {}
    for t in rec.tracked:
        groups.setdefault(t.name.split(".")[0], []).append(t)
    names = list(groups)[:max_panels]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    k = 16
    for ax, g in zip(axes[0], names, strict=True):
        for i, t in enumerate(groups[g]):
            th, pr = series(rec, t)["theta"], predicted_theta(rec, t)
            n = len(th) // k * k
            if n == 0:
                continue
            steps = rec.steps[:n].reshape(-1, k).mean(1)
            color = f"C{i % 10}"
            ax.plot(steps, np.sqrt((th[:n] ** 2).reshape(-1, k).mean(1)), color=color, lw=1.2,
                    label=t.name.removeprefix(g + "."))
            if np.isfinite(pr).any():
                ax.plot(steps, np.sqrt((pr[:n] ** 2).reshape(-1, k).mean(1)), color=color,
                        ls="--", lw=0.9)
        ax.set_yscale("log")
        ax.set(title=f"{g} (dashed: prediction)", xlabel="step", ylabel="angular update θ (rad)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def provenance(rec: Records) -> dict:
    """What a verdict stands on, for the JSON."""
    import platform

    import torch

    return {"optimizer": rec.optimizer, "every": rec.every, "units": rec.units,
            "recorded_steps": int(len(rec.steps)), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(terse=True),
            "decoupled_weight_decay": rec.decoupled_weight_decay}


def write_report(rec: Records, directory, title: str = "Training-run monitor", **criterion
                 ) -> dict[str, Path]:
    """monitor.md + monitor.json + monitor.png in ``directory`` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = judge_records(rec, **criterion)
    crit = {"window": WINDOW, "blocks": BLOCKS, "tolerance": TOLERANCE, "level": LEVEL,
            "radial_tolerance": RADIAL_TOLERANCE, **criterion}
    png = figure(rec, out / "monitor.png")
    missing = "".join(f"\n- {n}: no gradient at {c} recorded steps" for n, c in
                      rec.missing_grad.items())
    md = [f"# {title}", "", f"Optimizer `{rec.optimizer}`, {len(rec.steps)} recorded steps "
          f"(every {rec.every}), {len(rec.tracked)} scale-invariant tensors "
          "(wd_claims.invariance). Criterion, fixed before the run: the 95 % t-interval of the "
          f"block residuals log(θ/θ*) over the last {crit['window']} recorded steps (blocks of "
          "twice the residual's measured autocorrelation time, at least window/"
          f"{crit['blocks']}) within ±log(1 + {crit['tolerance']}), for the steady state and "
          "for the schedule's tracked prediction; control: the same criterion with weight_decay "
          "halved (the λ-convention slip).", "", summary_table(verdicts), "",
          "Conventions: " + "; ".join(sorted({f"{t.rule or '—'}: {t.rule_note}"
                                             for t in rec.tracked})) + missing, "",
          f"![angles]({png.name})", ""]
    (out / "monitor.md").write_text("\n".join(md), encoding="utf-8")
    payload = {"criterion": crit, "provenance": provenance(rec),
               "verdicts": [asdict(v) for v in verdicts]}
    tmp = out / f".monitor.json.{os.getpid()}"
    tmp.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / "monitor.json")
    return {"markdown": out / "monitor.md", "json": out / "monitor.json", "figure": png}
