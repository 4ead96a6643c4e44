"""Configurations outside the theory's domain: a network that died (G = 0) or diverged.

The equilibrium the dynamics claims test needs gradient noise, G = ‖∇L(u)‖ > 0. A configuration
whose tracked gradient is exactly zero at some step has a dead network (no path from its kernels
to the loss: every ReLU off, or the BN scales decayed to 0); from then on weight decay alone
shrinks w by (1 − 2ηλ) per step, geometrically towards 0, and no statement about its equilibrium
can be judged. Exactly zero is a float64 fact, not a threshold. A configuration whose metrics
stop being finite diverged. Either is excluded from the claims that read the run, and the
verdict's setting names it with the step it happened at (``excluded``): it is a measured outcome
of the article's grid in that setting, not hidden.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wd_claims.run_config import TrainResult


def left_domain(result: TrainResult) -> list[tuple[int, str] | None]:
    """Per configuration: None, or (the first step, what happened) where its joint gradient norm
    is exactly 0 (died) or not finite (diverged). gnorm: (K, T, P), the joint column last."""
    gnorm = result.metrics["gnorm"][:, :, -1]
    out: list[tuple[int, str] | None] = []
    for k in range(gnorm.shape[0]):
        dead = np.flatnonzero(gnorm[k] == 0)
        wild = np.flatnonzero(~np.isfinite(gnorm[k]))
        first = [(int(dead[0]), "died (G = 0: the gradient vanished in every tracked tensor)")
                 if dead.size else None,
                 (int(wild[0]), "diverged (non-finite gradient)") if wild.size else None]
        found = [f for f in first if f is not None]
        out.append(min(found) if found else None)
    return out


def within_domain(result: TrainResult) -> tuple[TrainResult, list[str]]:
    """(``result`` without the configurations that died or diverged, one message per excluded
    configuration); ``result`` itself when none did."""
    events = left_domain(result)
    if not any(events):
        return result, []
    keep = [k for k, e in enumerate(events) if e is None]
    c = result.config
    messages = [f"η={c.etas[k]:.3g}, λ={c.lams[k]:.3g} {what} at step {step:,} and was excluded"
                for k, e in enumerate(events) if e is not None for step, what in [e]]
    config = replace(c, etas=tuple(c.etas[k] for k in keep), lams=tuple(c.lams[k] for k in keep),
                     init_scales=None if c.init_scales is None
                     else tuple(c.init_scales[k] for k in keep))
    kept = replace(result, config=config,
                   metrics={m: a[keep] for m, a in result.metrics.items()},
                   diverged=[result.diverged[k] for k in keep],
                   checkpoints={s: [states[k] for k in keep]
                                for s, states in result.checkpoints.items()},
                   test={m: a[keep] for m, a in result.test.items()},
                   train_eval={m: a[keep] for m, a in result.train_eval.items()})
    return kept, messages
