"""What the regularization claims (C9, C10) train for themselves, and measure on those runs.

Each claim declares ``runs`` (its TrainConfigs) and ``run_measure`` (a picklable measure of one
run, which the worker that trained the run computes right after training, into the cache).

- C9, the noise of one 2η step against two η steps: :func:`noise_runs` (one epoch at the grid's
  middle (η, λ), checkpoints at its start and end), :func:`measure_noise` (per-draw contributions
  of every kind of step, :func:`wd_claims.noise.draw_contributions`, from a pool of the first
  POOL_BATCHES·b training images), :func:`noise_intervals` (BCa intervals of the variance ratios).
- C10, the sharpness on the unit sphere at the end of training: :func:`sharpness_runs` (one run
  per seed of :func:`sharpness_grid`), :func:`measure_sharpness` (every configuration: the top
  eigenvalue of the tangent-space Hessian of the scale-invariant tensors at unit norm, Lanczos over
  Hessian-vector products, the per-tensor η_e and, for the main configurations, the exact stability
  number λ_max(D^½PHPD^½), D = diag(η_e,i)), :func:`per_seed_rows`, and
  :func:`falling_rank_test` (Spearman's ρ with its one-sided permutation p-value, vectorized over
  the pairings by :func:`spearman_rho`).
"""

from __future__ import annotations

import functools
from types import MappingProxyType

import numpy as np
import torch
from scipy import stats
from torch.nn import functional as F

from wd_claims.noise import draw_contributions, ratio_interval
from wd_claims.probes import sharpness_on_sphere
from wd_claims.run_config import TrainConfig

# --- C9: noise variance ---------------------------------------------------------------------

POOL_BATCHES = 4        # N = 4b: 2(N − b)/(N − 2b) = 3 against the article's 2
NOISE_KINDS = MappingProxyType({           # the two-step kinds each compared with one 2η step
    "two_steps_independent": "independent batches at w₀ (the article)",
    "two_steps_disjoint": "control: disjoint batches at w₀",
    "two_steps_real": "two real consecutive steps"})


def noise_runs(budget, images, model: str) -> list[TrainConfig]:
    """One epoch at the budget grid's middle (η, λ), checkpoints at its start and end."""
    n_train = len(images[0].y)
    steps = n_train // budget.batch_size
    eta, lam = budget.etas[len(budget.etas) // 2], budget.lams[len(budget.lams) // 2]
    return [TrainConfig(etas=(eta,), lams=(lam,), steps=steps, batch_size=budget.batch_size,
                        model=model, width=budget.width, seed=0, augment=budget.augment,
                        checkpoints=(0, steps), data=images[0].name, n_train=n_train,
                        evaluate=False)]


def measure_noise(result, train_data, *, batch: int, draws: int) -> dict:
    """Per-draw contributions ``a_<kind>`` (checkpoints, draws) of every kind of step at every
    checkpoint of the run, from a pool of the first POOL_BATCHES·``batch`` training images; and
    the ``checkpoints``."""
    n_pool = POOL_BATCHES * batch
    x, y = train_data.x[:n_pool], train_data.y[:n_pool]
    steps = list(result.config.checkpoints)
    per_step = [draw_contributions(result.model(0, s), x, y, eta=result.config.etas[0],
                                   batch_size=batch, draws=draws, seed=s) for s in steps]
    return {**{f"a_{k}": np.stack([c[k] for c in per_step]) for k in per_step[0]},
            "checkpoints": np.array(steps)}


def noise_run_measure(budget):
    """The picklable :func:`measure_noise` at ``budget``'s b and draws."""
    return functools.partial(measure_noise, batch=budget.cap_images(budget.noise_batch),
                             draws=budget.cap_repeats(budget.noise_draws))


def noise_intervals(m: dict, level: float) -> dict:
    """kind → per checkpoint (ratio, low, high) of one-step / two-step total variance, and
    ``curvature``: h = E⟨ξ, H ξ⟩/E‖ξ‖², the Hessian's Rayleigh quotient on the step's noise (HVPs
    on the second batch); ``predicted``: the one-step ratio against the independent pair plus the
    first-order response −η²H g(w₀, B₁). ``m``: :func:`measure_noise`'s arrays."""
    ratios = {**{k: ("one_step_2eta", k) for k in NOISE_KINDS},
              "curvature": ("curvature_num", "curvature_den"),
              "predicted": ("one_step_2eta", "two_steps_predicted")}
    return {k: [ratio_interval(m[f"a_{num}"][i], m[f"a_{den}"][i], level=level, seed=i)
                for i in range(len(m["checkpoints"]))] for k, (num, den) in ratios.items()}


def sequential_ratio(fn, eta_h) -> list[float]:
    """[f(ηh), min, max of f over ηh's interval], f = sympy's 4/(1 + (1 − ηh)²) as ``fn(q)``:
    the real two-step ratio the quadratic model predicts from the measured curvature."""
    est, lo, hi = (float(v) for v in eta_h)
    values = [float(fn(q)) for q in np.linspace(lo, hi, 65)]
    return [float(fn(est)), min(values), max(values)]


def quadratic_regime(eta: float, curvature: list) -> tuple[list, list[bool]]:
    """(ηh intervals, in the regime per checkpoint) from the curvature intervals h along the noise:
    the quadratic model's regime is sympy's h > 0 and ηh < 2 (the two-step map contracts); where
    the HVPs resolve ηh inside (0, 2) C9 judges the real steps, elsewhere it reports them."""
    eta_h = [[eta * v for v in h] for h in curvature]
    return eta_h, [bool(0 < lo and hi < 2) for _, lo, hi in eta_h]


def predicts(predicted, real, ideal: float) -> bool:
    """The curvature's prediction explains a miss of the real ratio: its interval excludes
    ``ideal`` on the side of the real estimate (direction) and overlaps the real interval (size)."""
    _, p_lo, p_hi = predicted
    r, r_lo, r_hi = real
    side = p_lo > ideal if r > ideal else p_hi < ideal
    return bool(side and p_lo <= r_hi and r_lo <= p_hi)


# --- C10: sharpness -------------------------------------------------------------------------

DTYPE = torch.float32   # of the Hessian-vector products (ARPACK's Lanczos itself is float64)
NCV = 8                 # Lanczos vectors: the top eigenvalue is an outlier, 8 suffice
LAM_RATIO = 2.0         # the four λ are λ₀·2ᵏ: η_e* ∝ √λ spans 2^1.5 ≈ 2.8×
N_LAMS = 4              # λ at the middle η
DRIFT_IMAGES = 1024     # training images of the drift fraction (disjoint batches of b)


def sharpness_grid(budget) -> tuple[list[float], list[float], list[str]]:
    """(etas, lams, roles): N_LAMS λ at the budget's middle η ("main"), then the configurations
    sharing the ηλ of the second λ ("control": with the main one, N_LAMS λ spanning the main's
    range, so that the control's rank test can reach the level the main one does)."""
    eta = budget.etas[len(budget.etas) // 2]
    lams = [budget.lams[0] * LAM_RATIO**k for k in range(N_LAMS)]
    shifts = [LAM_RATIO**k for k in range(-N_LAMS + 2, 2) if k]   # ½, ¼ … and 2: λ₁·shift
    return ([eta] * N_LAMS + [eta / s for s in shifts], lams + [lams[1] * s for s in shifts],
            ["main"] * N_LAMS + ["control"] * len(shifts))


def sharpness_sizes(budget) -> dict:
    """What C10 spends at ``budget``: steps per run, sharpness batch, ARPACK tolerance, images of
    each set for the reported gap (0: every image)."""
    return {"steps": budget.steps if budget.sharpness_steps is None else budget.sharpness_steps,
            "eval_batch": budget.cap_images(budget.sharpness_batch), "tol": budget.sharpness_tol,
            "eval_images": budget.n_test if budget.sharpness_eval_images is None
            else budget.sharpness_eval_images}


def sharpness_runs(budget, images, model: str) -> list[TrainConfig]:
    """One run of :func:`sharpness_grid` per seed (two at least)."""
    (etas, lams, _), s = sharpness_grid(budget), sharpness_sizes(budget)
    return [TrainConfig(etas=tuple(etas), lams=tuple(lams), steps=s["steps"],
                        batch_size=budget.batch_size, model=model, width=budget.width, seed=seed,
                        augment=budget.augment, data=images[0].name, n_train=budget.n_train,
                        freeze_non_invariant=True, eval_images=s["eval_images"])
            for seed in (tuple(budget.seeds) if len(budget.seeds) >= 2 else (0, 1))]


def sharpness_run_measure(budget):
    """The picklable :func:`measure_sharpness` at ``budget``."""
    s = sharpness_sizes(budget)
    return functools.partial(measure_sharpness, eval_batch=s["eval_batch"], tol=s["tol"],
                             roles=tuple(sharpness_grid(budget)[2]),
                             drift_images=budget.cap_images(DRIFT_IMAGES),
                             batch=budget.batch_size)


def effective_lrs(model, names: list[str], eta: float, lam: float) -> np.ndarray:
    """η_e,i = η/((1 − 2ηλ)‖w_i‖²) per tensor (P,), C6's exact first-order factor, at the
    model's current point."""
    params = dict(model.named_parameters())
    sq = np.array([float(params[n].detach().double().pow(2).sum()) for n in names])
    return eta / ((1 - 2 * eta * lam) * sq)


def drift_fraction(model, names: list[str], x, y, batch: int, level: float = 0.95) -> list:
    """[d, low, high]: the share of the mean-square mini-batch gradient that is drift, d =
    ‖ḡ‖²/E‖g_B‖², over the disjoint batches of (x, y) at the model's point (BN in training mode):
    a_j = ⟨g_j, mean of the other batches' g⟩ has mean ‖ḡ‖² whatever the noise, so d is 0 at a
    stationary point of the loss on (x, y) and 1 where the noise vanishes; a t-interval over j.
    The distance from a minimum C10's stability bound needs: it binds only near one."""
    params = dict(model.named_parameters())
    rows = []
    for j in range(len(x) // batch):
        loss = F.cross_entropy(model(x[j * batch:(j + 1) * batch]), y[j * batch:(j + 1) * batch])
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    g = torch.stack(rows)
    others = (g.sum(0, keepdim=True) - g) / (len(g) - 1)
    a = ((g * others).sum(1) / (g * g).sum(1).mean()).numpy()
    half = stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return [float(a.mean()), float(a.mean() - half), float(a.mean() + half)]


def sharpness_of_config(result, k: int, x, y, tol: float, stability: bool,
                        drift_data=None) -> dict:
    """Sharpness of configuration k at the end of training and, if ``stability``, the exact
    stability product λ_max(D^½PHPD^½), D = diag(η_e,i): the sharpness each tensor's own η_e
    sees (per-tensor η_e differ up to ~10×, so no single η_e times the sharpness is exact); its
    Lanczos run starts from the sharpness's Ritz vector (D^-½v), which saves products."""
    names = list(result.tensors[:-1])  # the tracked tensors (the joint column is last)
    model = result.model(k)
    eta, lam = result.config.etas[k], result.config.lams[k]
    sharp = sharpness_on_sphere(model, x, y, names, dtype=DTYPE, tol=tol, ncv=NCV)
    eta_e = effective_lrs(model, names, eta, lam)
    product, matvecs = float("nan"), sharp.matvecs
    if stability:
        numels = [dict(model.named_parameters())[n].numel() for n in names]
        v0 = sharp.vector / np.repeat(np.sqrt(eta_e), numels)
        prod = sharpness_on_sphere(model, x, y, names, dtype=DTYPE, tol=tol, ncv=NCV,
                                   scales=np.sqrt(eta_e), v0=v0)
        product, matvecs = prod.value, matvecs + prod.matvecs
    drift = (drift_fraction(model, names, *drift_data) if drift_data is not None
             else [float("nan")] * 3)
    return {"eta": eta, "lam": lam, "sharpness": sharp.value, "residual": sharp.residual,
            "drift": drift[0], "drift_low": drift[1], "drift_high": drift[2],
            "matvecs": matvecs, "eta_e_min": float(eta_e.min()), "eta_e_max": float(eta_e.max()),
            "eta_e_median": float(np.median(eta_e)), "product": product,
            "train_loss": float(result.train_eval["loss"][k]),
            "train_acc": float(result.train_eval["accuracy"][k]),
            "test_loss": float(result.test["loss"][k]),
            "test_acc": float(result.test["accuracy"][k]),
            "diverged": result.diverged[k] is not None}


def measure_sharpness(result, train_data, *, eval_batch: int, tol: float,
                      roles: tuple[str, ...], drift_images: int = 0, batch: int = 16) -> dict:
    """:func:`sharpness_of_config` of every configuration of one run, on the first ``eval_batch``
    training images (un-augmented), the stability number and the drift fraction (on the first
    ``drift_images``, in batches of ``batch``) for the ``"main"`` roles: arrays over
    configurations."""
    x, y = train_data.x[:eval_batch].cpu(), train_data.y[:eval_batch].cpu()
    drift = (train_data.x[:drift_images].cpu(), train_data.y[:drift_images].cpu(), batch)
    rows = [sharpness_of_config(result, k, x, y, tol, roles[k] == "main",
                                drift if roles[k] == "main" and drift_images else None)
            for k in range(result.config.k)]
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


def per_seed_rows(per_seed: dict, roles) -> dict:
    """Every configuration of every seed's run (per_seed: seed → :func:`measure_sharpness`'s arrays)
    as a flat dict of arrays over rows (seed, configuration), with ``seed`` and ``main``."""
    keys = list(next(iter(per_seed.values())))
    m = {key: np.concatenate([np.asarray(a[key]) for a in per_seed.values()]) for key in keys}
    m["seed"] = np.concatenate([np.full(len(roles), seed) for seed in per_seed])
    m["main"] = np.array([role == "main" for _ in per_seed for role in roles])
    return m


def spearman_rho(x, y, axis=-1):
    """Spearman's ρ of ``x`` and ``y`` along ``axis`` (any leading shape; ties get average ranks),
    as scipy.stats.spearmanr computes it: the Pearson correlation of the ranks. Vectorized, so
    that the permutation test below evaluates all its pairings in one call."""
    from scipy import stats as st

    rx = st.rankdata(np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(y))), axis=axis)
    ry = st.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    return np.sum(rx * ry, axis=axis) / np.sqrt(np.sum(rx**2, axis=axis) * np.sum(ry**2, axis=axis))


def falling_rank_test(lams, values, seed: int = 0, n_resamples: int = 9999
                      ) -> tuple[float, float]:
    """(Spearman ρ of values on λ, one-sided permutation p-value for ρ < 0): scipy's
    permutation_test of the pairings (exact when they number ≤ 9999)."""
    from scipy import stats as st

    lams, values = np.asarray(lams, float), np.asarray(values, float)
    if np.unique(values).size < 2 or not np.all(np.isfinite(values)):
        return float("nan"), 1.0          # no order at all (e.g. λ-independent sharpness)
    rho = float(st.spearmanr(lams, values).statistic)
    res = st.permutation_test((values,), lambda v, axis=-1: spearman_rho(lams, v, axis=axis),
                              permutation_type="pairings", alternative="less", vectorized=True,
                              n_resamples=n_resamples, random_state=np.random.default_rng(seed))
    return rho, float(res.pvalue)
