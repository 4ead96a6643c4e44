"""L2-regularized logistic regression, solved with a certificate: C0's convex setting.

- :func:`features` — scikit-learn's breast-cancer data (569 × 30, binary), standard-normal
  features appended, standardized, rows scaled into the ball of radius ℓ.
- :func:`objective` — F(w) = mean logistic loss + λ‖w‖² and its gradient (no intercept: the
  classical bound regularizes every parameter).
- :func:`fit` — L-BFGS in float64 on the exact objective; :func:`certificate` — the
  strong-convexity bound ‖w − w*‖ ≤ ‖∇F(w)‖/(2λ), computed apart from the fit at the λ the claim
  states, so a slip of the λ inside the fit (λ/2: the convention) shows as an uncertified point.
- :func:`path` / :func:`measure_dimension` — norms, certificates and held-out − train gaps along
  a λ grid, over random half splits; :func:`measure_grid` — every dimension, and the control.
"""

from __future__ import annotations

import numpy as np

DATA = "scikit-learn load_breast_cancer (569 × 30, binary)"


def features(extra: int, seed: int = 0, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): X (569, 30 + extra) standardized, rows scaled so max ‖x‖ = ``radius``;
    y ∈ {−1, +1}."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    noise = np.random.default_rng(seed).standard_normal((X.shape[0], extra))
    X = np.hstack([X, noise])
    X = (X - X.mean(0)) / X.std(0)
    return radius * X / np.linalg.norm(X, axis=1).max(), 2.0 * y - 1.0


def mean_logistic_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """(1/m) Σ log(1 + exp(−yᵢ⟨w, xᵢ⟩)), computed without overflow."""
    return float(np.logaddexp(0.0, -y * (X @ w)).mean())


def objective(w: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float):
    """(F(w), ∇F(w)) for F(w) = mean logistic loss + λ‖w‖²; w (d,), X (m, d), y (m,)."""
    z = y * (X @ w)
    dloss_dz = -np.exp(-np.logaddexp(0.0, z))       # −1/(1 + e^z), stable for any z
    grad = X.T @ (dloss_dz * y) / len(y) + 2.0 * lam * w
    return float(np.logaddexp(0.0, -z).mean() + lam * w @ w), grad


def fit(X: np.ndarray, y: np.ndarray, lam: float, start: np.ndarray | None = None) -> np.ndarray:
    """The L-BFGS minimizer of F (stops at max |∂F| ≤ 1e-12)."""
    from scipy.optimize import minimize

    start = np.zeros(X.shape[1]) if start is None else start
    res = minimize(objective, start, args=(X, y, lam), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 20_000, "maxcor": 30})
    return res.x


def certificate(w: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """‖∇F_λ(w)‖/(2λ) ≥ ‖w − w*(λ)‖ (F_λ is 2λ-strongly convex), at the ``lam`` given."""
    return float(np.linalg.norm(objective(w, X, y, lam)[1]) / (2.0 * lam))


def path(X, y, train, test, lams):
    """Norms, certificates and gaps along the λ grid for one split: three arrays (len(lams),).
    Solved from the largest λ down, warm-started (the solution moves little between neighbours)."""
    norms, certs, gaps = (np.empty(len(lams)) for _ in range(3))
    w = None
    for i in np.argsort(lams)[::-1]:
        w = fit(X[train], y[train], lams[i], w)
        certs[i] = certificate(w, X[train], y[train], lams[i])
        norms[i] = np.linalg.norm(w)
        held_out, seen = (mean_logistic_loss(w, X[s], y[s]) for s in (test, train))
        gaps[i] = held_out - seen
    return norms, certs, gaps


def measure_dimension(extra: int, n_splits: int, lams, seed: int = 1,
                      radius: float = 1.0) -> dict:
    """Over ``n_splits`` random half splits (``seed``: the same splits for every dimension and
    λ grid), fits at every λ of ``lams``. Returns norms, certs, gaps (n_splits, len(lams)),
    m (training size), d, and the largest row norm."""
    X, y = features(extra, radius=radius)
    rng = np.random.default_rng(seed)
    m = len(y) // 2
    runs = []
    for _ in range(n_splits):
        perm = rng.permutation(len(y))
        runs.append(path(X, y, perm[:m], perm[m:], lams))
    norms, certs, gaps = (np.array(a) for a in zip(*runs, strict=True))
    return {"norms": norms, "certs": certs, "gaps": gaps, "m": m, "d": X.shape[1],
            "max_row_norm": float(np.linalg.norm(X, axis=1).max())}


def measure_grid(n_splits: int, lams, extra_features, control_factor: float, ell: float = 1.0,
                 radius: float | None = None) -> dict:
    """Every dimension (30 + each of ``extra_features``), at λ and (the control) at
    λ·``control_factor``, as one flat dict: per d, ``norms_<d>``, ``certs_<d>``, ``gaps_<d>``,
    ``max_row_norm_<d>`` and the control's ``control_norms_<d>`` …; plus ``lams`` (the λ each
    column's bounds are for), ``ell`` (the radius the bounds assume; the rows are scaled to
    ``radius``, ℓ unless a fault test says otherwise), ``m`` and ``dims``."""
    radius = ell if radius is None else radius
    out = {"lams": lams, "ell": ell, "control_factor": control_factor, "n_splits": n_splits}
    dims = []
    for extra in extra_features:
        for prefix, factor in (("", 1.0), ("control_", control_factor)):
            r = measure_dimension(extra, n_splits, lams * factor, radius=radius)
            for key in ("norms", "certs", "gaps", "max_row_norm"):
                out[f"{prefix}{key}_{r['d']}"] = r[key]
        dims.append(r["d"])
        out["m"] = r["m"]
    out["dims"] = np.array(dims)
    return out
