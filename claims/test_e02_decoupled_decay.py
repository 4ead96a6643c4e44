"""E2 — decoupled weight decay (SGDW, AdamW): the rotational equilibrium of Kosson et al. 2024.

Outside the article (it treats the coupled loss term λ‖w‖²). Convention: decoupled decay λ_w shrinks
the weights directly, w_{t+1} = (1 − ηλ_w)w_t − η·v_{t+1}, as PyTorch's ``AdamW(weight_decay=λ_w)``
does; λ_w is NOT the article's λ (plain SGD without momentum: λ_w = 2λ).

Expected (sympy, ``wd_claims.theory.e02_decoupled_decay``): with momentum μ (SGDW's μ; Adam's β₁) and
a = 1 − ηλ_w, given only that the new (preconditioned) gradient h_t is orthogonal to w_t,
P_t + μa·P_{t−1} = (a + μ)‖w_t‖² exactly, so at a steady state cos θ* = (a + μ)/(1 + μa) and
θ* ≈ √(2ηλ_w(1−μ)/(1+μ)) (μ = 0: √(2ηλ_w)); drifting by e^δ per step,
cos θ = (a + μ)/(e^{δ/2} + μa·e^{−δ/2}). The norm balance gives X* = η²U(1+μa)/((1−a²)(1−μa))
(U = ‖v‖²), and with Adam's random-walk U = C(1−μ)/(1+μ) (C entries) X* → ηC/(2λ_w): exponent 1
in η/λ_w (the article's SGD: ½). For SGDW h = g, orthogonal by C2; for AdamW h is the gradient
divided per entry by √v̂, orthogonal only approximately — an assumption this claim tests.

Measurement: a plain training loop (the engine is coupled-SGD only) on the zoo's
``conv_groupnorm`` (two 3x3 convolutions, GroupNorm; both kernels scale-invariant, they alone
train, as in the CPU dynamics runs), the budget's data and batch size. SGDW: μ ∈ {0.5, 0.9},
η = 0.316, ηλ_w ∈ {0.01, 0.0316}. AdamW: β₁ ∈ {0, 0.9}, β₂ = 0.99 (PyTorch's 0.999 averages
over 1,000 steps, longer than a CPU run: the denominator would not be in equilibrium),
(η, λ_w) ∈ {(0.01, 0.5), (0.005, 2)}. Per tensor: geometric mean of cos θ_t over blocks of the last
half of the run, the same block t-interval as E1 (Bonferroni over tensors and configurations).

Control: the article's coupled formula with λ_w read as its λ, arccos(1 − 2ηλ_w) (momentum
ignored, factor-2 convention slip; sympy: θ too large by √(2(1+μ)/(1−μ))), rejected by the same
interval for every tensor and configuration.

Budget: smoke — 80 steps; quick — 320 steps (8 runs, ≈ 30 s on one quiet core); full —
4,000 steps.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from wd_claims import stats, theory  # noqa: E402
from wd_claims.data import DeviceData  # noqa: E402
from wd_claims.invariance import scale_invariant_names  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402
from wd_claims.train import TrainConfig, batch_stream, build_model  # noqa: E402
from wd_claims.zoo import MODELS  # noqa: E402

pytestmark = pytest.mark.e02

QUOTE = ("(outside the article) Kosson et al. 2024: decoupled weight decay brings every "
         "scale-invariant tensor to a rotational equilibrium, θ ≈ √(2ηλ_w(1−β₁)/(1+β₁))")
MODEL = "conv_groupnorm"
STEPS = {"smoke": 80, "quick": 320, "full": 4000}
WINDOW, N_BLOCKS, FAMILY_LEVEL = 0.5, 8, 0.95
BETA2 = 0.99
SGDW = [(mu, 0.316, lw) for mu in (0.5, 0.9) for lw in (0.01 / 0.316, 0.1)]   # (μ, η, λ_w)
ADAMW = [(b1, eta, lw) for b1 in (0.0, 0.9) for eta, lw in ((0.01, 0.5), (0.005, 2.0))]


def train_decoupled(kind: str, mu: float, eta: float, lam_w: float, budget, images) -> dict:
    """One run of ``kind`` ∈ {"sgdw", "adamw"}; only the scale-invariant kernels train. Returns
    names (P,), C (P,) entries, and (T, P+1) float64 arrays — column P is the concatenation —
    x = ‖w_t‖², cos = cos θ_t, U = ‖(a·w_t − w_{t+1})/η‖², cos_uw = cos(that update, w_t),
    eps = η‖g_t‖|cos(g_t, w_t)|/‖w_t‖ (C2's ε term)."""
    steps = STEPS.get(budget.name, budget.steps)
    tc = TrainConfig(etas=(eta,), lams=(0.0,), steps=steps, batch_size=budget.batch_size,
                     model=MODEL, seed=budget.seeds[0], augment=budget.augment, evaluate=False)
    model = build_model(tc)
    names = scale_invariant_names(model, MODELS[MODEL].input_shape)
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in names)
    params = [named[n] for n in names]
    if kind == "adamw":
        opt = torch.optim.AdamW(params, lr=eta, weight_decay=lam_w, betas=(mu, BETA2))
    else:  # SGDW: decay first, then the momentum step with the gradient taken at w_t
        opt = torch.optim.SGD(params, lr=eta, momentum=mu)
    a = 1 - eta * lam_w
    sizes = [p.numel() for p in params]
    seg = np.repeat(np.arange(len(sizes)), sizes)
    out = {k: np.full((steps, len(names) + 1), np.nan) for k in ("x", "cos", "U", "cos_uw", "eps")}
    train = DeviceData.from_images(images[0])

    def sums(v):  # (n,) → (P+1,): per tensor and total
        s = np.bincount(seg, weights=v, minlength=len(sizes))
        return np.append(s, s.sum())

    for t, (x, y) in enumerate(batch_stream(tc, train)):
        w = torch.cat([p.detach().reshape(-1) for p in params]).double()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in params]).double()
        if kind == "sgdw":
            with torch.no_grad():
                for p in params:
                    p.mul_(a)
        opt.step()
        v = torch.cat([p.detach().reshape(-1) for p in params]).double()
        u = (a * w - v) / eta
        ww, vv, wv, uu, uw, gg, gw = (sums(q.numpy()) for q in
                                      (w * w, v * v, w * v, u * u, u * w, g * g, g * w))
        out["x"][t], out["cos"][t], out["U"][t] = ww, wv / np.sqrt(ww * vv), uu
        out["cos_uw"][t] = uw / np.sqrt(uu * ww)
        out["eps"][t] = eta * np.abs(gw) / ww   # η‖g‖|cos(g,w)|/‖w‖ = η|⟨g,w⟩|/‖w‖²
    return dict(names=names, C=np.array(sizes + [sum(sizes)]), **out)


_MEMO: dict = {}


def run(kind, mu, eta, lam_w, suite, images):
    key = (kind, mu, eta, lam_w, suite.budget.name, images[0].name)
    if key not in _MEMO:
        _MEMO[key] = train_decoupled(kind, mu, eta, lam_w, suite.budget, images)
    return _MEMO[key]


def blocks(n_steps: int) -> list[tuple[int, int]]:
    """N_BLOCKS [start, stop) ranges tiling the last WINDOW of the steps 0 … T−2 (step T−1 has no
    recorded successor norm)."""
    w = stats.late_window(n_steps, WINDOW)
    edges = np.linspace(w.start, n_steps - 1, N_BLOCKS + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:], strict=True))


def residual_interval(cos, x, cos_pred, level):
    """(mean, low, high): t-interval of log(θ_block/θ_pred(δ)) over the blocks, δ the window's
    mean per-step drift of log x. cos, x: (T,); cos_pred: δ ↦ predicted cos θ."""
    spans = blocks(len(cos))
    delta = np.log(x[spans[-1][1]] / x[spans[0][0]]) / (spans[-1][1] - spans[0][0])
    theta = np.array([np.arccos(stats.geometric_mean(cos[s:e])) for s, e in spans])
    res = np.log(theta / np.arccos(cos_pred(delta)))
    return stats.ols(res, {}, intercept=True, level=level)["intercept"]


def _contains_zero(ci) -> bool:
    return bool(np.all(np.isfinite(ci)) and ci[1] <= 0 <= ci[2])


def _excludes_zero(ci) -> bool:
    return bool(np.all(np.isfinite(ci)) and not ci[1] <= 0 <= ci[2])


def evaluate(kind, configs, suite, images):
    """Per (configuration, tensor): measured θ, θ*, the control θ, both intervals, verdicts."""
    d = theory.e02_decoupled_decay()
    assert all(d.proved.values()), d.text
    cos_drift = d.fn("cos_drift", theory.eta, theory.lam_w, theory.mu, theory.delta)
    theta_star = d.fn("theta_star", theory.eta, theory.lam_w, theory.mu)
    U_sym = next(s for s in d.exprs["x_star"].free_symbols if s.name == "U")
    x_star = d.fn("x_star", theory.eta, theory.lam_w, theory.mu, U_sym)
    first = run(kind, *configs[0], suite, images)
    n_tensors = len(first["names"])
    level = 1 - (1 - FAMILY_LEVEL) / (len(configs) * n_tensors)
    rows = []
    for mu, eta, lw in configs:
        r = run(kind, mu, eta, lw, suite, images)
        window = stats.late_window(r["cos"].shape[0], WINDOW)
        for p, name in enumerate(r["names"]):
            cos, x = r["cos"][:, p], r["x"][:, p]
            ci = residual_interval(cos, x, lambda dl, e=eta, w_=lw, m=mu: cos_drift(e, w_, m, dl),
                                   level)
            ctrl = residual_interval(cos, x, lambda dl, e=eta, w_=lw: cos_drift(e, 2 * w_, 0, dl),
                                     level)
            U = float(np.mean(r["U"][window, p]))
            rows.append(dict(
                mu=mu, eta=eta, lam_w=lw, tensor=name, C=int(r["C"][p]), adam=kind == "adamw",
                theta=float(np.arccos(stats.geometric_mean(cos[window][:-1]))),
                theta_star=float(theta_star(eta, lw, mu)),
                theta_ctrl=float(np.arccos(1 - 2 * eta * lw)), ci=ci, ctrl=ctrl,
                ok=_contains_zero(ci), rejected=_excludes_zero(ctrl),
                drift=float(np.log(x[-1] / x[window.start])),
                x=float(np.mean(x[window])), x_star_U=float(x_star(eta, lw, mu, U)),
                x_kosson=eta * r["C"][p] / (2 * lw), U_over_C=U / r["C"][p],
                U_random_walk=(1 - mu) / (1 + mu),
                cos_uw=float(np.mean(r["cos_uw"][window, p])),
                # 2a⟨u,w⟩/(ηU): the radial part of the update against the step's own η²U in
                # the norm balance; 0 for an orthogonal update without momentum
                radial=float(2 * (1 - eta * lw) * np.mean(
                    r["cos_uw"][window, p] * np.sqrt(r["U"][window, p] * x[window]))
                    / (eta * U)),
                eps=float(np.mean(r["eps"][window, p]))))
    return d, rows, level


def _adam(row, value, expected=None) -> str:
    """Kosson's random-walk columns mean something for Adam's normalized update only."""
    if not row["adam"]:
        return "–"
    return fmt(value) if expected is None else f"{fmt(value)} ({fmt(expected)})"


def table(rows) -> str:
    head = ("| μ (β₁) | η | λ_w | tensor | θ measured | θ* = arccos((a+μ)/(1+μa)) | "
            "log(θ/θ*) CI | control arccos(1−2ηλ_w) | control CI | drift | ‖w‖² / X*(U) | "
            "‖w‖² / (ηC/2λ_w) | U/C (Adam random walk) | mean cos(update, w) | 2a⟨u,w⟩/(ηU) |")
    out = [head, "|---" * 15 + "|"]
    out += [f"| {r['mu']} | {r['eta']:.3g} | {r['lam_w']:.3g} | `{r['tensor']}` | "
            f"{fmt(r['theta'])} | {fmt(r['theta_star'])} | [{r['ci'][1]:.3f}, {r['ci'][2]:.3f}] | "
            f"{fmt(r['theta_ctrl'])} | [{r['ctrl'][1]:.3f}, {r['ctrl'][2]:.3f}] | "
            f"{r['drift']:.3f} | {fmt(r['x'] / r['x_star_U'])} | "
            f"{_adam(r, r['x'] / r['x_kosson'])} | "
            f"{_adam(r, r['U_over_C'], r['U_random_walk'])} | {r['cos_uw']:.3f} | "
            f"{r['radial']:.3g} |" for r in rows]
    return "\n".join(out)


def figure(rows, kind, suite):
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    th, ts = [r["theta"] for r in rows], [r["theta_star"] for r in rows]
    for tensor, marker in zip(sorted({r["tensor"] for r in rows}), "os^v", strict=False):
        sel = [r for r in rows if r["tensor"] == tensor]
        ax.plot([r["theta_star"] for r in sel], [r["theta"] for r in sel], marker, label=tensor)
    ax.plot([r["theta_star"] for r in rows], [r["theta_ctrl"] for r in rows], "rx",
            label="control arccos(1−2ηλ_w)")
    lim = [min(th + ts) / 1.5, max(th + ts + [r["theta_ctrl"] for r in rows]) * 1.2]
    ax.plot(lim, lim, "k-", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="θ* (sympy)", ylabel="per-step angle θ (rad)",
           title=f"{kind.upper()}: measured vs rotational-equilibrium angle")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure_path = save_figure(fig, suite.report_dir, f"E2-{kind}-{MODEL}.png")
    plt.close(fig)
    return figure_path


def verdict(kind, configs, suite, images, record_verdict, optimizer_text):
    d, rows, level = evaluate(kind, configs, suite, images)
    passed = all(r["ok"] for r in rows)
    rejected = all(r["rejected"] for r in rows)
    bad = [(r["mu"], r["eta"], r["lam_w"], r["tensor"], round(r["theta"] / r["theta_star"], 3))
           for r in rows if not r["ok"]]
    status = "pass" if passed and rejected else "fail"
    reason = "" if passed else f"θ outside the interval (μ, η, λ_w, tensor, θ/θ*): {bad}"
    if not passed and rejected and (kind == "adamw" or suite.budget.name == "smoke"):
        status = "xfail"
        reason += ("; smoke budget: too short for an equilibrium" if suite.budget.name == "smoke"
                   else "; Adam's per-entry normalization leaves its update with a radial "
                        "component (mean cos(update, w) in the table): the orthogonality the "
                        "rotational equilibrium assumes fails, and the norm balance shifts")
    if not rejected:
        reason += "; the control was not rejected"
    record_verdict(Verdict(
        id="E2", title=f"{kind.upper()}: θ* = arccos((a+μ)/(1+μa)) ≈ √(2ηλ_w(1−μ)/(1+μ))",
        quote=QUOTE, expected="cos θ* = (a+μ)/(1+μa), a = 1 − ηλ_w; drift-corrected "
                              "(a+μ)/(e^{δ/2} + μa e^{−δ/2})",
        derivation=d.text,
        predicted={f"μ={r['mu']}, η={r['eta']:.3g}, λ_w={r['lam_w']:.3g}, {r['tensor']}":
                   r["theta_star"] for r in rows},
        measured={"headline": max(abs(r["ci"][0]) for r in rows),
                  "θ": {f"μ={r['mu']}, η={r['eta']:.3g}, λ_w={r['lam_w']:.3g}, {r['tensor']}":
                        r["theta"] for r in rows}},
        tolerance=[list(r["ci"][1:]) for r in rows],
        tolerance_reason=f"t-interval over {N_BLOCKS} blocks of the last {WINDOW:.0%} of the run "
                         f"of log(θ_block/θ*(δ)), δ the window's drift, level {level:.4f} "
                         f"(Bonferroni over {len(rows)} tensor-configurations: family-wise "
                         f"{FAMILY_LEVEL:.0%}); C2's ε term η|⟨g,w⟩|/‖w‖² is "
                         f"≤ {max(r['eps'] for r in rows):.2g}, far below the interval",
        status=status, reason=reason,
        control={"description": "the article's coupled plain-SGD formula with λ_w read as λ, "
                                "arccos(1−2ηλ_w), in the same interval",
                 "measured": [list(r["ctrl"]) for r in rows],
                 "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure(rows, kind, suite)], tables=[table(rows)],
        notes=[f"optimizer: {optimizer_text}; decoupled decay w ← (1 − ηλ_w)w before the step",
               "only the scale-invariant kernels train (classifier and GroupNorm affine frozen)",
               "X*(U): the norm balance with the measured U = ‖update‖²; ηC/(2λ_w): Kosson et "
               "al.'s closed form (Adam random walk U = C(1−μ)/(1+μ); exponent 1 in η/λ_w)",
               "with momentum the update v has a radial part even when h ⟂ w (sympy's "
               "P_t + μa·P_{t−1} identity accounts for it: stationarity then gives "
               "2a⟨v,w⟩/(ηU) = −2μa/(1−μa), which SGDW's column matches); without momentum "
               "(AdamW β₁ = 0) the orthogonal value is 0, and any radial part is Adam's own"],
        context={"model": MODEL, "data": images[0].name,
                 "steps": STEPS.get(suite.budget.name, suite.budget.steps)}))
    if status == "xfail":
        pytest.xfail(reason)
    assert rejected, [(r["tensor"], r["ctrl"]) for r in rows]
    assert passed, bad


def test_sgdw_rotational_equilibrium_angle_is_sqrt_2_eta_lambda_w_1_minus_mu_over_1_plus_mu(
        suite, images, record_verdict):
    verdict("sgdw", SGDW, suite, images, record_verdict,
            "torch.optim.SGD(momentum=μ), weight decay applied as w ← (1 − ηλ_w)w")


def test_adamw_rotational_equilibrium_angle_matches_kosson_et_al(suite, images, record_verdict):
    verdict("adamw", ADAMW, suite, images, record_verdict,
            f"torch.optim.AdamW(lr=η, weight_decay=λ_w, betas=(β₁, {BETA2}))")
