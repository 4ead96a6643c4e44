"""The training runs the dynamics claims (C4–C8) share, as configurations of a budget.

Three runs, all ResNet-8 at the budget's width (or the model a claim is run on), plain SGD in the
article's convention (λ of the loss term λ‖w‖², PyTorch weight_decay = 2λ inside
:mod:`wd_claims.train`):

- :func:`grid_config` — the Fig. 2 grid: every (η, λ) of ``budget.etas × budget.lams``, one run
  per seed. C5, C6, C7 and C8 read it.
- :func:`starts_config` — the grid's middle (η, λ) started at ‖w₀‖ scaled by 1/4, 1 and 4, and the
  same three starts with λ = 0 (C4's spiral out, C5's control: no fixed point).
- :func:`momentum_config` — λ = 0 with momentum 0.9, a quarter of the steps (C4's control).

The grid is geometric with the same ratio in η and λ, so the anti-diagonals share ηλ (C7's
equal-ηλ comparison). Who trains them, and when, is :class:`wd_claims.scheduler.Scheduler`'s job.
"""

from __future__ import annotations

from types import MappingProxyType

from wd_claims.config import Budget
from wd_claims.invariance import EXACT_EPS
from wd_claims.run_config import TrainConfig

START_SCALES = (0.25, 1.0, 4.0)    # ‖w₀‖ multipliers of the scale-invariant tensors (C4, C5)
MOMENTUM = 0.9                     # C4's control: the usual value
EDGE = 0.1                         # C4's "early" and "late": the first and last tenth of a run


def edge_middles(steps: int) -> tuple[int, int]:
    """The middle steps of the first and last ``EDGE`` of a run of ``steps`` (C4 probes G there)."""
    n = max(1, int(EDGE * steps))
    return n // 2, steps - n + n // 2
SHARED_BY = frozenset({"C4", "C5", "C6", "C7", "C8"})   # the claims that read these runs


def _common(budget: Budget, seed: int, data_name: str, model: str) -> dict:
    return dict(steps=budget.steps, batch_size=budget.batch_size, model=model,
                width=budget.width, seed=seed, augment=budget.augment, data=data_name,
                n_train=budget.n_train, evaluate=budget.evaluate_shared_runs,
                eval_images=budget.eval_images,
                freeze_non_invariant=budget.freeze_non_invariant)


def grid_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8",
                part: int | None = None) -> TrainConfig:
    """K = len(etas)·len(lams) configurations; configuration k = i·len(lams) + j is (η_i, λ_j).
    Starts at ‖w₀‖ × ``budget.grid_init_scale`` when the budget sets it (CPU budgets). ``part``
    of ``budget.grid_parts``: a contiguous share of those configurations (joined again by
    :func:`wd_claims.run_config.joined`; a configuration's numbers do not depend on its
    neighbours, so the parts give the whole bit for bit, tests/test_train.py)."""
    pairs = [(e, lam) for e in budget.etas for lam in budget.lams]
    if part is not None:
        bounds = [round(i * len(pairs) / budget.grid_parts) for i in range(budget.grid_parts + 1)]
        pairs = pairs[bounds[part]: bounds[part + 1]]
    scale = budget.grid_init_scale
    return TrainConfig(etas=tuple(e for e, _ in pairs), lams=tuple(lam for _, lam in pairs),
                       init_scales=None if scale is None else (float(scale),) * len(pairs),
                       **_common(budget, seed, data_name, model))


def middle(budget: Budget) -> tuple[float, float]:
    """The grid's central (η, λ)."""
    return budget.etas[len(budget.etas) // 2], budget.lams[len(budget.lams) // 2]


def starts_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8"
                  ) -> TrainConfig:
    """Six configurations: (η, λ) then (η, 0), each from START_SCALES; η, λ = :func:`middle`.

    The grid's full length: the map alone relaxes in ~1/(8ηλ) steps, but x* moves while G drifts
    early in training. Normalizations' eps ≈ 0 (EXACT_EPS): C4's identity Δ‖w‖² = η²‖g‖² needs
    ⟨g, w⟩ = 0, which eps = 1e-5 breaks where ‖w‖ is small (docs/performance.md, "Budgets").
    The middles of the first and last tenth are kept: C4 probes G there."""
    eta, lam = middle(budget)
    n = len(START_SCALES)
    common = {**_common(budget, seed, data_name, model), "steps": budget.steps_of_starts}
    return TrainConfig(etas=(eta,) * 2 * n, lams=(lam,) * n + (0.0,) * n,
                       init_scales=START_SCALES * 2, norm_eps=EXACT_EPS,
                       checkpoints=edge_middles(budget.steps_of_starts), **common)


def momentum_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8"
                    ) -> TrainConfig:
    """λ = 0, momentum 0.9, the middle η, the ‖w₀‖/4 start, a quarter of the steps."""
    eta, _ = middle(budget)
    common = _common(budget, seed, data_name, model)
    common["steps"] = max(8, budget.steps_of_starts // 4)
    return TrainConfig(etas=(eta,), lams=(0.0,), momentum=MOMENTUM,
                       init_scales=(START_SCALES[0],), **common)


MAKE = MappingProxyType({"grid": grid_config, "starts": starts_config,
                         "momentum": momentum_config})


def shared_configs(budget: Budget, data_name: str, which: str, model: str) -> list[TrainConfig]:
    """The run(s) of ``which`` for ``model``: one per seed for the grid (``budget.grid_parts``
    per seed, seed by seed, when it is split), the first seed else."""
    if which == "grid" and budget.grid_parts > 1:
        return [grid_config(budget, seed, data_name, model, part) for seed in budget.seeds
                for part in range(budget.grid_parts)]
    seeds = budget.seeds if which == "grid" else budget.seeds[:1]
    return [MAKE[which](budget, seed, data_name, model) for seed in seeds]


def all_shared_configs(budget: Budget, data_name: str, model: str) -> list[TrainConfig]:
    """Every shared run of ``model``, in MAKE's order."""
    return [c for which in MAKE for c in shared_configs(budget, data_name, which, model)]
