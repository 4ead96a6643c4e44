"""The monitor inside the trainers people use: :mod:`.lightning` (a PyTorch Lightning
``Callback``) and :mod:`.huggingface` (a ``transformers`` ``TrainerCallback``). Both attach one
:class:`wd_claims.monitor.Monitor` to the trainer's optimizer, follow its schedule (the
hyperparameters are read at every recorded step), log per-tensor scalars through the trainer's
logger (TensorBoard by default) with ``add_scalar`` under grouped tags, and write the report at
the end of training. Lightning and transformers are optional extras (``pip install
'wd-claims[integrations]'``); importing this package needs neither.
"""

from __future__ import annotations

import numpy as np

from wd_claims.monitor_records import Records, predicted_theta, series


def scalars(rec: Records, prefix: str = "wd_claims") -> dict[str, float]:
    """{"<prefix>/<tensor>/<quantity>": value} over the records given (those since the last log):
    θ = RMS angle (rad), θ* = RMS steady-state prediction, their ratio, the mean effective
    learning rate, ‖w‖ at the last step, and the count of skipped steps. One tag per tensor and
    quantity, for ``add_scalar`` (not histograms, not ``add_scalars``' one event folder per key)."""
    out: dict[str, float] = {}
    if len(rec.steps) == 0:
        return out
    skipped = rec.skipped if rec.skipped is not None else np.zeros(len(rec.steps), dtype=bool)
    for t in rec.tracked:
        s = series(rec, t)
        ok = np.isfinite(s["theta"])
        if not ok.any():
            continue
        theta = float(np.sqrt(np.mean(s["theta"][ok] ** 2)))
        pred = predicted_theta(rec, t)[ok]
        star = float(np.sqrt(np.mean(pred**2))) if np.isfinite(pred).all() else float("nan")
        values = {"theta": theta, "theta_pred": star, "ratio": theta / star,
                  "eff_lr": float(np.mean(s["eff_lr"][ok])),
                  "norm": float(np.sqrt(s["x"][ok][-1])), "skipped": float(skipped.sum())}
        out.update({f"{prefix}/{t.name}/{k}": v for k, v in values.items() if np.isfinite(v)})
    return out
