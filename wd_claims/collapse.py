"""Configurations outside the theory's domain: a network that died (G = 0) or diverged.

The equilibrium the dynamics claims test needs gradient noise, G = ‖∇L(u)‖ > 0. A configuration
whose tracked gradient is exactly zero at some step has a dead network (no path from its kernels
to the loss: every ReLU off, or the BN scales decayed to 0); from then on weight decay alone
shrinks w by (1 − 2ηλ) per step, geometrically towards 0, and no statement about its equilibrium
can be judged. Exactly zero is a float64 fact, not a threshold. A configuration that diverged is
the engine's own record (``TrainResult.diverged``: its loss or parameters stopped being finite,
and it was frozen there). Either is excluded from the claims that read the run, and the
verdict's setting names it with the step it happened at (``excluded``): it is a measured outcome
of the article's grid in that setting, not hidden.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wd_claims.run_config import TrainResult


def left_domain(result: TrainResult) -> list[str | None]:
    """Per configuration: None, or why it left the domain: the engine's divergence record, or
    the first step at which its joint gradient norm is exactly 0. gnorm: (K, T, P), joint last."""
    gnorm = result.metrics["gnorm"][:, :, -1]
    c = result.config
    out: list[str | None] = []
    for k, diverged in enumerate(result.diverged):
        dead = np.flatnonzero(gnorm[k] == 0)
        out.append(diverged if diverged is not None else
                   f"η={c.etas[k]:.3g}, λ={c.lams[k]:.3g} died (G = 0: the gradient vanished "
                   f"in every tracked tensor) at step {int(dead[0]):,}" if dead.size else None)
    return out


def within_domain(result: TrainResult) -> tuple[TrainResult, list[str]]:
    """(``result`` without the configurations that died or diverged, one message per excluded
    configuration); ``result`` itself when none did."""
    events = left_domain(result)
    if not any(events):
        return result, []
    keep = [k for k, e in enumerate(events) if e is None]
    c = result.config
    messages = [f"{e} and was excluded" for e in events if e is not None]
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
