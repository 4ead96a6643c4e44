"""One config object per budget, in the theory's terms, and the single conversion to PyTorch's.

Convention (docs/claims.md): the article regularizes with the loss term ``λ‖w‖²``, so one plain
SGD step is ``w ← w − η(g + 2λw) = (1 − 2ηλ)w − ηg``. ``torch.optim.SGD(weight_decay=wd)`` adds
``wd·w`` to the gradient, hence ``wd = 2λ``. Everything in this project speaks λ; only
:func:`torch_weight_decay` speaks PyTorch.

Every length a claim or a run reads is a typed :class:`Budget` field, with its unit; why each
budget has the values it has, and how they were measured, is in docs/performance.md ("Budgets").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from types import MappingProxyType


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_weight_decay(lam: float) -> float:
    """The ``weight_decay`` argument of ``torch.optim.SGD`` that realises the loss term λ‖w‖²."""
    return 2.0 * lam


@dataclass(frozen=True)
class Shrink:
    """A test-only cut of a budget's lengths (``WD_CLAIMS_TEST_SHRINK``): caps on the claims' own
    steps, images and repetitions, and the overrides as given (for the report's warning)."""

    overrides: tuple[tuple[str, float], ...]
    max_steps: int | None = None
    max_images: int | None = None
    max_repeats: int | None = None


@dataclass(frozen=True)
class Budget:
    """How much compute a run of the suite may spend; hyperparameters in the theory's terms (λ)."""

    name: str
    # --- the shared runs (C4–C8): Fig. 2's grid -------------------------------------------------
    width: int                      # ResNet-8 stage-1 channels (16 is the real ResNet-8)
    n_train: int                    # training images used (CIFAR-10 has 50,000)
    n_test: int                     # held-out images for generalization gaps
    batch_size: int                 # images per SGD step
    epochs: float                   # passes over the n_train images, per configuration
    etas: tuple[float, ...]         # learning rates η of the Fig. 2 grid
    lams: tuple[float, ...]         # weight-decay strengths λ of the loss term λ‖w‖²
    seeds: tuple[int, ...]          # independent repetitions of every training run
    needs_cifar: bool               # True: skip the data-hungry claims without real CIFAR-10
    augment: bool = True            # random crop (pad 4) + horizontal flip, on the device
    freeze_non_invariant: bool = False   # dynamics runs train only the scale-invariant tensors
    grid_init_scale: float | None = None  # the grid starts at ‖w₀‖ × this (None: default init)
    evaluate_shared_runs: bool = True     # the shared runs' final test/train evaluation
    step_count: int | None = None   # SGD steps per configuration when fixed (the article's
                                    # 39,100), whatever the data's size; None: epochs × n_train / B
    grid_parts: int = 1             # each seed's grid trained as this many runs (workers share
                                    # one seed; the parts are joined, wd_claims.run_config.joined)
    starts_steps: int | None = None  # C4/C5's starts and C4's momentum run (None: ``steps``)
    data: str = "auto"              # the images when --data is not given (wd_claims.datasets)
    # --- the claims' own sizes ------------------------------------------------------------------
    probe_batch: int = 16           # images in the geometry probes' batch (C1–C3)
    c0_splits: int = 40             # C0: random train/test splits per λ
    noise_batch: int = 32           # C9: b, images per probed step (the pool is 4b)
    noise_draws: int = 64           # C9: draws of each kind of step per checkpoint
    sharpness_steps: int | None = 128   # C10: steps per configuration (None: ``steps``)
    sharpness_batch: int = 64       # C10: training images of the fixed sharpness batch
    sharpness_tol: float = 1e-2     # C10: ARPACK's relative tolerance on the Ritz residual
    sharpness_eval_images: int | None = None  # C10: images of each set for the gap (None: n_test)
    momentum_steps: int = 320       # E1: steps per momentum run
    momentum_width: int = 8         # E1: ResNet-8 width (the angle does not depend on it)
    momentum_init_scale: float | None = 0.5   # E1: start at ‖w₀‖ × this (None: default init)
    decoupled_steps: int = 320      # E2: steps per SGDW / AdamW run
    shrink: Shrink | None = None    # a test-only cut (:func:`shrunk`); None for a real budget

    @property
    def steps(self) -> int:
        """SGD steps per configuration of the grid."""
        if self.step_count is not None:
            return self.step_count
        return int(round(self.epochs * self.n_train / self.batch_size))

    @property
    def steps_of_starts(self) -> int:
        """SGD steps of C4/C5's starts run (the momentum run takes a quarter)."""
        return self.starts_steps or self.steps

    def asdict(self) -> dict:
        return asdict(self)

    def cap_steps(self, steps: int) -> int:
        """A claim's own step count, capped by a test-only shrink (``max_steps``)."""
        cap = self.shrink.max_steps if self.shrink else None
        return steps if cap is None else min(steps, cap)

    def cap_images(self, n: int) -> int:
        """A claim's own image count (a probe or evaluation batch), capped likewise."""
        cap = self.shrink.max_images if self.shrink else None
        return n if cap is None else min(n, cap)

    def cap_repeats(self, n: int) -> int:
        """A claim's own number of repetitions (splits, draws), capped likewise."""
        cap = self.shrink.max_repeats if self.shrink else None
        return n if cap is None else min(n, cap)

    @property
    def eval_images(self) -> int:
        """A shared run's ``TrainConfig.eval_images``: 0 (every image) unless a test-only shrink
        caps the image counts (``max_images``), then that cap."""
        return int(self.shrink.max_images or 0) if self.shrink else 0


# The (η, λ) grids are geometric with the same ratio √10 in η and in λ: each spans 10×, and the
# anti-diagonals share ηλ (C7 compares equal-ηλ configurations).
_R10 = 10**0.5
# CPU budgets: the dynamics runs train only the scale-invariant kernels, from ‖w₀‖/4, without the
# final evaluation no claim reads (docs/performance.md, "Budgets", says why and what it measured).
_CPU = MappingProxyType(dict(freeze_non_invariant=True, grid_init_scale=0.25,
                                evaluate_shared_runs=False))

BUDGETS: MappingProxyType[str, Budget] = MappingProxyType({
    # Seconds per claim; what the engine's tests use. Not meant to pass the dynamics statistics.
    "smoke": Budget(name="smoke", width=8, n_train=1024, n_test=512, batch_size=32, epochs=4,
                    etas=(0.1, 0.1 * _R10, 1.0), lams=(0.01, 0.01 * _R10, 0.1), seeds=(0,),
                    needs_cifar=False, **_CPU, probe_batch=16, c0_splits=8, noise_batch=16,
                    noise_draws=32, sharpness_steps=64, momentum_steps=96, decoupled_steps=80),
    # The CPU default: 384 steps of batch 16 at width 8, ηλ ∈ [1e-3, 0.1], two seeds (C7 resolves
    # the raw Fig. 2 exponent to ±0.10 with two, not with one: docs/claims.md, C7).
    "quick": Budget(name="quick", width=8, n_train=8192, n_test=2048, batch_size=16, epochs=0.75,
                    etas=(0.1, 0.1 * _R10, 1.0), lams=(0.01, 0.01 * _R10, 0.1), seeds=(0, 1),
                    needs_cifar=False, **_CPU, probe_batch=16, c0_splits=40, noise_batch=32,
                    noise_draws=64, sharpness_steps=128, momentum_steps=320,
                    decoupled_steps=320),
    # The CUDA default, Fig. 2's setting: ResNet-8, CIFAR-10, batch 128, 100 epochs (39,100 steps),
    # ηλ ∈ [2.5e-5, 2.5e-3], every parameter training from the default start, two seeds.
    "full": Budget(name="full", width=16, n_train=50_000, n_test=10_000, batch_size=128,
                   epochs=100, etas=(0.1, 0.1 * _R10, 1.0), lams=(2.5e-4, 2.5e-4 * _R10, 2.5e-3),
                   seeds=(0, 1), needs_cifar=True, augment=True, probe_batch=128, c0_splits=200,
                   noise_batch=128, noise_draws=256, sharpness_steps=None, sharpness_batch=1024,
                   sharpness_tol=1e-3, sharpness_eval_images=0, momentum_steps=4000,
                   momentum_width=16, momentum_init_scale=None, decoupled_steps=4000),
})

# The article's Fig. 2 on two CPU cores, on real images (docs/regimes.md): its grid (the full
# budget's η and λ), its 39,100 steps, every parameter training from the default start; width 8,
# batch 8, one seed and the digits (1,437 training images) are the reductions that fit the time
# (docs/performance.md, "The article budget"). The starts run ten article epochs (≈ 8 relaxation
# times 1/(8ηλ) at the middle ηλ = 2.5e-4), E1's momentum runs five and C10's one; the claims'
# other sizes are the quick budget's.
BUDGETS = MappingProxyType({**BUDGETS, "article": replace(
    BUDGETS["quick"], name="article", width=8, n_train=1437, n_test=360, batch_size=8,
    epochs=39_100 * 8 / 1437, step_count=39_100, etas=BUDGETS["full"].etas,
    lams=BUDGETS["full"].lams, seeds=(0,), freeze_non_invariant=False, grid_init_scale=None,
    evaluate_shared_runs=True, grid_parts=2, starts_steps=3_910, momentum_steps=1_955,
    sharpness_steps=391, data="digits")})

DEVICES = ("auto", "cpu", "cuda")

# A test-only override of a budget's lengths (JSON in this variable), so that the full budget's
# code path runs end to end on a CPU in minutes (tests/test_full_budget.py). The report says so.
ENV_SHRINK = "WD_CLAIMS_TEST_SHRINK"
SHRINKABLE = ("n_train", "n_test", "epochs", "step_count", "starts_steps",
              "probe_batch")   # Budget fields
CAPS = ("max_steps", "max_images", "max_repeats")   # caps on claim-specific lengths (Budget.cap_*)


def shrunk(budget: Budget, overrides: dict) -> Budget:
    """``budget`` with the lengths in ``overrides`` replaced (fields of SHRINKABLE, caps of CAPS);
    anything else is a ValueError: the override may shorten a budget, never change its setting."""
    unknown = sorted(set(overrides) - set(SHRINKABLE) - set(CAPS))
    if unknown:
        raise ValueError(f"{ENV_SHRINK}: {unknown} cannot be overridden; only the lengths "
                         f"{SHRINKABLE + CAPS}")
    # epochs is a float even where a budget spells it as an int (smoke's 4): 0.5 must stay 0.5
    fields = {k: float(v) if k == "epochs" else int(v) for k, v in overrides.items()
              if k in SHRINKABLE}
    if "epochs" in fields and budget.step_count is not None:    # a fixed count yields to epochs
        fields.setdefault("step_count", None)
    caps = {k: int(v) for k, v in overrides.items() if k in CAPS}
    return replace(budget, **fields,
                   shrink=Shrink(overrides=tuple(sorted(overrides.items())), **caps))
