"""Verdicts, report and figure for :class:`wd_claims.monitor.Monitor`'s records.

Criterion, fixed before measuring (the defaults; a user may fix others before a run): a window of
``window`` recorded steps is cut into ``blocks`` blocks; each block's residual is
log(θ_rms/θ*_rms) (RMS over the block's steps of the measured angle and of the prediction in force
at each step); the window is *at equilibrium* when the blocks' 95 % t-interval of the mean residual
lies inside ±log(1 + tolerance) — an equivalence test, so a noisy window cannot pass by being
wide. Windows slide by one block; a tensor *reached* equilibrium at the first window end after
which every window is inside; its verdict is the last window's (*equilibrium*), or *left
equilibrium* (some earlier window was inside: the step it first was is reported), or, never
inside, *off prediction* (the interval wholly outside the band) or *unresolved* (straddling it:
too noisy to decide at this tolerance). Default tolerance 10 %: the
formulas are exact steady states of the update rules, first order in ηλ only in their small-angle
forms, and an independent measurement put AdamW's per-unit angle at 0.98–1.00 of Kosson et al.'s.

A tensor whose gradient keeps a radial component (median |cos(g, w)| > ``radial_tolerance``;
scale-invariant tensors measure ~1e-7 in float32) is reported *not scale-invariant*: the
prediction does not apply. The negative control is the same criterion with a wrong optimizer's
prediction (:data:`CONTROL`); it must be rejected, or the verdict says the criterion could not
tell the two apart.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from wd_claims import optimizers
from wd_claims.claim import t_interval
from wd_claims.monitor_records import Records, Tracked, predicted_theta, series

WINDOW, BLOCKS, TOLERANCE, LEVEL = 256, 8, 0.10, 0.95
RADIAL_TOLERANCE = 1e-3   # median |cos(g, w)|: a fixed resolution, ≫ float32 rounding (~1e-7)
# rule → (the wrong prediction's rule, the momentum it assumes or None: the group's own)
CONTROL = MappingProxyType({
    "sgd": ("sgd-momentum", 0.9), "sgd-momentum": ("sgd", None),
    "sgdw": ("sgd", None), "adamw": ("sgd", None), "lion": ("adamw", 0.9)})
CONTROL_TEXT = MappingProxyType({
    "sgd": "SGD + momentum 0.9's formula", "sgd-momentum": "plain SGD's formula "
    "(momentum ignored)", "sgdw": "coupled plain SGD's formula",
                "adamw": "plain SGD's formula (β₁ and the preconditioner ignored)",
                "lion": "AdamW's formula at β₁ = 0.9"})


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
    radial: float = math.nan  # median |cos(g, w)|
    windows_inside: str = ""  # "inside/all" sliding windows
    note: str = ""


def window_residuals(theta, pred, window: int, blocks: int) -> list[tuple[int, np.ndarray]]:
    """[(end index, (blocks,) residuals log(θ_rms/θ*_rms)) per window]; theta, pred: (T,)."""
    size = window // blocks
    out = []
    for end in range(window, len(theta) + 1, size):
        th = theta[end - window: end].reshape(blocks, size)
        pr = pred[end - window: end].reshape(blocks, size)
        out.append((end, np.log(np.sqrt(np.nanmean(th**2, 1)) / np.sqrt(np.nanmean(pr**2, 1)))))
    return out


def interval(residuals, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of (n,) block residuals (the suite's one
    block interval, :func:`wd_claims.claim.t_interval`)."""
    ci = t_interval(residuals, level)
    return float(ci.estimate), float(ci.low), float(ci.high)


def inside(ci, tolerance: float) -> bool:
    """The equivalence criterion: the whole interval within ±log(1 + tolerance)."""
    band = math.log1p(tolerance)
    return bool(np.isfinite(ci[1]) and -band <= ci[1] and ci[2] <= band)


def outside(ci, tolerance: float) -> bool:
    """The interval lies wholly outside ±log(1 + tolerance): measurably off the prediction."""
    band = math.log1p(tolerance)
    return bool(np.isfinite(ci[1]) and (ci[1] > band or ci[2] < -band))


def judge_tensor(rec: Records, t: Tracked, *, window: int = WINDOW, blocks: int = BLOCKS,
                 tolerance: float = TOLERANCE, radial_tolerance: float = RADIAL_TOLERANCE
                 ) -> TensorVerdict:
    """A pure function of the records: see the module docstring."""
    s = series(rec, t)
    radial = float(np.nanmedian(np.abs(s["cos_gw"]))) if len(s["cos_gw"]) else math.nan
    v = TensorVerdict(t.name, t.rule, "", radial=radial, note=t.rule_note)
    if np.isfinite(radial) and radial > radial_tolerance:
        v.status = "not scale-invariant"
        v.note = f"median |cos(g, w)| = {radial:.2g} > {radial_tolerance:g}: a radial gradient"
        return v
    if t.rule is None:
        v.status = "no prediction"
        return v
    h = rec.hyper_for(t)
    if len(h) and h[-1, 1] <= 0:
        v.status = "no decay"
        v.note = "weight decay 0: no equilibrium (the norm grows, C4)"
        return v
    pred = predicted_theta(rec, t)
    v.tau = optimizers.relaxation_steps(t.rule, optimizers.Hyper(*h[-1])) if len(h) else math.nan
    wins = window_residuals(s["theta"], pred, window, blocks)
    if not wins:
        v.status = "too short"
        v.note = f"{len(rec.steps)} recorded steps < window {window}"
        return v
    ok = [inside(interval(r), tolerance) for _, r in wins]
    mean, lo, hi = interval(wins[-1][1])
    v.ratio, v.ratio_ci = math.exp(mean), (math.exp(lo), math.exp(hi))
    last = slice(wins[-1][0] - window, wins[-1][0])
    v.theta = float(np.sqrt(np.mean(s["theta"][last] ** 2)))
    v.theta_pred = float(np.sqrt(np.mean(pred[last] ** 2)))
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
    elif outside(interval(wins[-1][1]), tolerance):
        v.status = "off prediction"
        v.note = "the last window's interval lies wholly outside the band"
    else:
        v.status = "unresolved"
        v.note = ("the last window's interval straddles the band's edge: too noisy to decide at "
                  "this tolerance (a longer window narrows it)")
    wrong, mu = CONTROL[t.rule]
    hc = h.copy()
    if mu is not None:
        hc[:, 2] = mu
    cpred = np.array([optimizers.predicted_angle(wrong, optimizers.Hyper(*row)) for row in hc])
    v.control = CONTROL_TEXT[t.rule]
    v.control_rejected = not inside(interval(window_residuals(s["theta"], cpred, window,
                                                              blocks)[-1][1]), tolerance)
    return v


def judge_records(rec: Records, **criterion) -> list[TensorVerdict]:
    """One verdict per tracked tensor."""
    return [judge_tensor(rec, t, **criterion) for t in rec.tracked]


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def summary_table(verdicts: list[TensorVerdict]) -> str:
    """A markdown table (readable in a terminal) of the verdicts."""
    rows = ["| tensor | rule | θ (rad) | θ* (rad) | θ/θ* [95 % CI] | verdict | reached at step | "
            "windows inside | τ (steps) | control rejected |",
            "|---|---|---:|---:|---|---|---:|---:|---:|---|"]
    for v in verdicts:
        ci = "—" if not np.isfinite(v.ratio) else \
            f"{v.ratio:.3f} [{v.ratio_ci[0]:.3f}, {v.ratio_ci[1]:.3f}]"
        ctrl = "—" if v.control_rejected is None else ("yes" if v.control_rejected else "**NO**")
        rows.append(f"| {v.name} | {v.rule or '—'} | {_fmt(v.theta)} | {_fmt(v.theta_pred)} | "
                    f"{ci} | {v.status} | {v.reached_step if v.reached_step is not None else '—'}"
                    f" | {v.windows_inside or '—'} | {_fmt(v.tau)} | {ctrl} |")
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
          "(wd_claims.invariance). Criterion, fixed before the run: the 95 % t-interval of "
          f"{crit['blocks']} block residuals log(θ/θ*) over a window of {crit['window']} recorded "
          f"steps within ±log(1 + {crit['tolerance']}); control: the same criterion with a wrong "
          "optimizer's prediction.", "", summary_table(verdicts), "",
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
