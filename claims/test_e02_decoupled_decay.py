"""E2 — decoupled weight decay (SGDW, AdamW): the per-unit rotational equilibrium of Kosson et al.

Outside the article (it treats the coupled loss term λ‖w‖²); docs/claims.md, E2. Convention:
decoupled decay λ_w shrinks the weights directly, w_{t+1} = (1 − ηλ_w)w_t − η·update, as PyTorch's
``AdamW(weight_decay=λ_w)`` does; λ_w is NOT the article's λ (plain SGD: λ_w = 2λ).

Expected (sympy, ``wd_claims.theory.e02_decoupled_decay``): with momentum μ (SGDW's μ; AdamW's
β₁) and a = 1 − ηλ_w, P_t + μa·P_{t−1} = (a + μ)‖w_t‖² given ⟨h_t, w_t⟩ = 0, so at a steady
state cos θ* = (a + μ)/(1 + μa), θ* ≈ √(2ηλ_w(1−β₁)/(1+β₁)) (Kosson et al. 2024: the expected
angular update of one unit, a neuron's / channel's weight vector feeding a normalization, in the
random-walk equilibrium); drifting by e^δ per step, cos θ = (a + μ)/(e^{δ/2} + μa·e^{−δ/2}).

Measurement: a plain training loop (the engine is coupled-SGD only) on ``models.toys.ConvNet``
with BatchNorm2d (two 3x3 convolutions, 8 and 16 channels: 24 units, each feeding its own BN
channel, hence scale-invariant per unit; they alone train), the budget's data and batch size.
SGDW: μ ∈ {0.5, 0.9}, η = 0.316, ηλ_w ∈ {0.01, 0.0316}. AdamW: β₁ ∈ {0, 0.9}, β₂ = 0.99
(PyTorch's 0.999 averages over 1,000 steps, longer than a CPU run), η = 0.01, λ_w ∈ {1, 2} (the
norm relaxes at rate 2ηλ_w: ≥ 3 relaxation times before the window). Per step: θ²_t, the mean
over units of the squared angle between w_{j,t} and w_{j,t+1}.

Criterion (core, per configuration): the block residuals log(θ_rms,block/θ*(δ)) over 8 blocks of
the last half of the run, θ_rms = √(mean θ²), have a t-interval (Bonferroni over the
configurations, family-wise 95 %) containing 0. The tolerance is that confidence interval only.
The update's radial share |cos(u, w)| is reported, not an excuse: it does not explain a gap.

Controls, the same interval: the article's coupled plain-SGD formula arccos(1 − 2ηλ_w) (λ_w read
as its λ, momentum ignored) must miss 0 at every configuration; μ/β₁ omitted, arccos(1 − ηλ_w),
at every μ > 0.

Budget: smoke — 80 steps; quick — 320 steps (4 runs per optimizer); full — 4,000 steps. SGDW and
AdamW are separate verdicts (parametrized).
"""

import functools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from wd_claims.models.toys import ConvNet  # noqa: E402

from wd_claims import setting, stats, theory  # noqa: E402
from wd_claims.data import DeviceData  # noqa: E402
from wd_claims.invariance import scale_invariant_names  # noqa: E402
from wd_claims.judge import Check  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402
from wd_claims.train import TrainConfig, batch_stream  # noqa: E402

pytestmark = pytest.mark.e02

QUOTE = ("(outside the article) Kosson et al. 2024: decoupled weight decay brings every "
         "neuron's weight vector to a rotational equilibrium, RMS angular update "
         "≈ √(2ηλ_w(1−β₁)/(1+β₁))")
MODEL = "convnet_bn"        # models.toys.ConvNet(channels=(8, 16), norm="batch"): per-unit BN
STEPS = {"smoke": 80, "quick": 320, "full": 4000}
WINDOW, N_BLOCKS, FAMILY_LEVEL = 0.5, 8, 0.95
BETA2 = 0.99
CONFIGS = {  # (μ or β₁, η, λ_w)
    "sgdw": [(mu, 0.316, lw) for mu in (0.5, 0.9) for lw in (0.01 / 0.316, 0.1)],
    "adamw": [(b1, 0.01, lw) for b1 in (0.0, 0.9) for lw in (1.0, 2.0)],
}
OPTIMIZER = {"sgdw": "torch.optim.SGD(lr=η, momentum=μ) after w ← (1 − ηλ_w)w (SGDW)",
             "adamw": f"torch.optim.AdamW(lr=η, weight_decay=λ_w, betas=(β₁, {BETA2}))"}


# --- measure ---------------------------------------------------------------------------------

def train_decoupled(kind: str, mu: float, eta: float, lam_w: float, budget, images) -> dict:
    """One run of ``kind`` ∈ {"sgdw", "adamw"}; only the scale-invariant kernels train. Per step
    t, over the J units (output channels; each feeds its own BatchNorm channel): θ²_t = mean_j
    θ_{j,t}² (θ_{j,t} the angle between w_{j,t} and w_{j,t+1}), the mean of log ‖w_{j,t}‖², and
    the radial share of the update u = (a·w_t − w_{t+1})/η: mean |cos(u_j, w_j)| and mean signed
    cos(u_j, w_j)."""
    steps = STEPS.get(budget.name, budget.steps)
    # the batch stream only (seed, batch, steps, augmentation); the model is built here
    tc = TrainConfig(etas=(eta,), lams=(0.0,), steps=steps, batch_size=budget.batch_size,
                     model="conv_groupnorm", seed=budget.seeds[0], augment=budget.augment,
                     evaluate=False)
    torch.manual_seed(budget.seeds[0])
    model = ConvNet(norm="batch")
    names = scale_invariant_names(model, (3, 32, 32))
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in names)
    params = [named[n] for n in names]
    if kind == "adamw":
        opt = torch.optim.AdamW(params, lr=eta, weight_decay=lam_w, betas=(mu, BETA2))
    else:  # SGDW: decay first, then the momentum step with the gradient taken at w_t
        opt = torch.optim.SGD(params, lr=eta, momentum=mu)
    a = 1 - eta * lam_w
    out = {k: np.full(steps, np.nan) for k in ("theta2", "logx", "radial", "cos_uw")}
    train = DeviceData.from_images(images[0])
    for t, (x, y) in enumerate(batch_stream(tc, train)):
        w = [p.detach().double().reshape(p.shape[0], -1).clone() for p in params]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if kind == "sgdw":
            with torch.no_grad():
                for p in params:
                    p.mul_(a)
        opt.step()
        theta, logx, cos_uw = [], [], []
        for w_, p in zip(w, params, strict=True):   # per layer: (units, fan-in) float64
            v = p.detach().double().reshape(p.shape[0], -1)
            u = (a * w_ - v) / eta
            ww, vv, wv = (w_ * w_).sum(1), (v * v).sum(1), (w_ * v).sum(1)
            theta.append(torch.arccos((wv / torch.sqrt(ww * vv)).clamp(-1, 1)))
            logx.append(torch.log(ww))
            cos_uw.append((u * w_).sum(1) / torch.sqrt((u * u).sum(1) * ww))
        theta, logx, cos_uw = torch.cat(theta), torch.cat(logx), torch.cat(cos_uw)
        out["theta2"][t] = float((theta ** 2).mean())
        out["logx"][t] = float(logx.mean())
        out["radial"][t] = float(cos_uw.abs().mean())
        out["cos_uw"][t] = float(cos_uw.mean())
    out["units"] = int(theta.numel())
    return out


def measure(kind: str, budget, images) -> dict:
    """Every configuration of CONFIGS[kind]: (K,) mu, eta, lam_w and (K, T) theta2, logx,
    radial, cos_uw (see :func:`train_decoupled`)."""
    runs = [train_decoupled(kind, mu, eta, lw, budget, images) for mu, eta, lw in CONFIGS[kind]]
    m = {key: np.array([c[i] for c in CONFIGS[kind]], dtype=float)
         for i, key in enumerate(("mu", "eta", "lam_w"))}
    m.update({key: np.array([r[key] for r in runs]) for key in ("theta2", "logx", "radial",
                                                                   "cos_uw")})
    m.update(kind=kind, units=runs[0]["units"], model=f"{MODEL}-{kind}", data=images[0].name,
             batch=budget.batch_size, seed=budget.seeds[0], augment=int(bool(budget.augment)))
    return m


# --- judge -----------------------------------------------------------------------------------

@functools.cache
def derivation():
    d = theory.e02_decoupled_decay()
    if not all(d.proved.values()):
        raise AssertionError(d.text)
    return d


def blocks(n_steps: int) -> list[tuple[int, int]]:
    """N_BLOCKS [start, stop) ranges tiling the last WINDOW of the steps."""
    w = stats.late_window(n_steps, WINDOW)
    edges = np.linspace(w.start, n_steps, N_BLOCKS + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:], strict=True))


def rms_angle_interval(theta2, logx, cos_pred, level):
    """The criterion: (mean, low, high), t-interval (wd_claims.stats.ols) of the block residuals
    log(θ_rms,block/θ_pred(δ)); θ_rms,block = √(mean over the block's steps and units of θ²),
    θ_pred = arccos(cos_pred(δ)), δ the window's mean per-step drift of mean_j log ‖w_j‖².
    theta2, logx: (T,)."""
    spans = blocks(len(theta2))
    delta = (logx[spans[-1][1] - 1] - logx[spans[0][0]]) / (spans[-1][1] - 1 - spans[0][0])
    theta = np.sqrt([np.mean(theta2[s:e]) for s, e in spans])
    res = np.log(theta / np.arccos(cos_pred(delta)))
    return stats.ols(res, {}, intercept=True, level=level)["intercept"]


def contains_zero(ci) -> bool:
    return bool(np.all(np.isfinite(ci)) and ci[1] <= 0 <= ci[2])


def excludes_zero(ci) -> bool:
    return bool(np.all(np.isfinite(ci)) and not ci[1] <= 0 <= ci[2])


def judge(m: dict, derivation_=None) -> Verdict:
    d = derivation_ or derivation()
    kind = str(m["kind"])
    cos_drift = d.fn("cos_drift", theory.eta, theory.lam_w, theory.mu, theory.delta)
    n = len(m["mu"])
    level = 1 - (1 - FAMILY_LEVEL) / n                   # Bonferroni: family-wise 95 %
    T = m["theta2"].shape[1]
    window = stats.late_window(T, WINDOW)
    rows = []
    for k in range(n):
        mu, eta, lw = float(m["mu"][k]), float(m["eta"][k]), float(m["lam_w"][k])
        th2, lx = m["theta2"][k], m["logx"][k]

        def judged(c, th2=th2, lx=lx):
            return rms_angle_interval(th2, lx, c, level)

        rows.append(dict(
            mu=mu, eta=eta, lam_w=lw,
            ci=judged(lambda dl, e=eta, w_=lw, m_=mu: cos_drift(e, w_, m_, dl)),
            # the article's coupled plain-SGD formula, λ_w read as its λ: arccos((1−2ηλ_w)e^{−δ/2})
            plain=judged(lambda dl, e=eta, w_=lw: cos_drift(e, 2 * w_, 0.0, dl)),
            # momentum / β₁ omitted: arccos((1−ηλ_w)e^{−δ/2})
            no_mu=judged(lambda dl, e=eta, w_=lw: cos_drift(e, w_, 0.0, dl)) if mu > 0 else None,
            theta=float(np.sqrt(np.mean(th2[window]))),
            theta_star=float(np.arccos(cos_drift(eta, lw, mu, 0.0))),
            theta_kosson=float(np.sqrt(2 * eta * lw * (1 - mu) / (1 + mu))),
            radial=float(np.mean(m["radial"][k, window])),
            cos_uw=float(np.mean(m["cos_uw"][k, window])),
            relaxations=float(window.start * 2 * eta * lw),
            drift=float(lx[-1] - lx[window.start])))
    label = [f"μ={r['mu']:g}, η={r['eta']:.3g}, λ_w={r['lam_w']:.3g}" for r in rows]
    criterion = (f"0 ∈ the {level:.4f} t-interval of mean log(θ_rms,block/θ*(δ)) over "
                 f"{N_BLOCKS} blocks of the last {WINDOW:.0%}")
    checks = [Check(f"RMS angle {lab}", contains_zero(r["ci"]), measured=r["ci"][0],
                    tolerance=list(r["ci"][1:]), criterion=criterion)
              for lab, r in zip(label, rows, strict=True)]
    mom = [r for r in rows if r["mu"] > 0]
    checks += [
        Check("control rejected: plain-SGD formula", all(excludes_zero(r["plain"]) for r in rows),
              measured=[r["plain"][0] for r in rows], tolerance=[list(r["plain"][1:])
                                                                 for r in rows],
              criterion="the same interval for arccos((1−2ηλ_w)e^{−δ/2}) (coupled plain SGD, λ_w "
                        "read as the article's λ, momentum ignored) must miss 0 everywhere"),
        Check("control rejected: momentum omitted", bool(mom) and all(
            excludes_zero(r["no_mu"]) for r in mom),
              measured=[r["no_mu"][0] for r in mom], tolerance=[list(r["no_mu"][1:])
                                                                for r in mom],
              criterion="the same interval for arccos((1−ηλ_w)e^{−δ/2}) (μ/β₁ omitted) must miss "
                        "0 at every μ > 0")]
    halfwidth = max((r["ci"][2] - r["ci"][1]) / 2 for r in rows)
    head = ("| μ (β₁) | η | λ_w | θ_rms measured | θ* = arccos((a+μ)/(1+μa)) | "
            "√(2ηλ_w(1−μ)/(1+μ)) | log(θ/θ*) CI | plain-SGD CI (control) | μ-omitted CI "
            "(control) | mean abs cos(u, w) | mean cos(u, w) | relaxation times before the "
            "window | drift |")
    table = [head, "|---" * 13 + "|"]
    table += [f"| {r['mu']:g} | {r['eta']:.3g} | {r['lam_w']:.3g} | {fmt(r['theta'])} | "
              f"{fmt(r['theta_star'])} | {fmt(r['theta_kosson'])} | "
              f"[{r['ci'][1]:.3f}, {r['ci'][2]:.3f}] | "
              f"[{r['plain'][1]:.3f}, {r['plain'][2]:.3f}] | "
              + (f"[{r['no_mu'][1]:.3f}, {r['no_mu'][2]:.3f}]" if r["no_mu"] is not None
                 else "= θ*")
              + f" | {r['radial']:.3f} | {r['cos_uw']:.2g} | {r['relaxations']:.1f} | "
                f"{r['drift']:.3f} |"
              for r in rows]
    controls = [c for c in checks if c.name.startswith("control rejected")]
    rejected = "rejected" if all(c.holds for c in controls) else "NOT rejected"
    return Verdict(
        id="E2", title=f"{kind.upper()}: per-unit RMS angle θ* = arccos((a+μ)/(1+μa)) ≈ "
                       "√(2ηλ_w(1−μ)/(1+μ))",
        quote=QUOTE, expected="cos θ* = (a+μ)/(1+μa), a = 1 − ηλ_w (μ = β₁ for AdamW); "
                              "drift-corrected (a+μ)/(e^{δ/2} + μa e^{−δ/2})",
        derivation=d.text,
        predicted=dict(zip(label, [r["theta_star"] for r in rows], strict=True)),
        measured={"headline": max(abs(r["ci"][0]) for r in rows),
                  "θ_rms": dict(zip(label, [r["theta"] for r in rows], strict=True)),
                  "θ_rms/θ*": [r["theta"] / r["theta_star"] for r in rows]},
        tolerance=[list(r["ci"][1:]) for r in rows],
        tolerance_reason=f"t-interval over {N_BLOCKS} blocks of the last {WINDOW:.0%} of the run "
                         f"of log(θ_rms,block/θ*(δ)), δ the window's drift of mean log‖w_j‖², "
                         f"level {level:.4f} (Bonferroni over {n} configurations: family-wise "
                         f"{FAMILY_LEVEL:.0%})",
        checks=checks,
        control={"status": rejected,
                 "description": "two wrong optimizers' predictions in the same interval: the "
                                "article's coupled plain-SGD formula arccos(1−2ηλ_w) (every "
                                "configuration) and the momentum/β₁-omitted arccos(1−ηλ_w) "
                                "(μ > 0)",
                 "measured": {"plain-SGD CIs": [list(r["plain"]) for r in rows],
                              "μ-omitted CIs": [list(r["no_mu"]) for r in mom]}},
        resolves=f"log(θ_rms/θ*) to ±{halfwidth:.3f} per configuration (θ within "
                 f"{np.expm1(halfwidth):.1%}); β₁'s 1/(1+β₁) alone is log √1.9 = 0.32 at 0.9",
        tables=["\n".join(table)],
        notes=[f"optimizer: {OPTIMIZER[kind]}",
               f"measured per unit: each of the {m['units']} output channels of the two 3x3 "
               "kernels feeds its own BatchNorm channel, so its weight vector is scale-invariant "
               "(Kosson et al.'s unit); θ_rms = √(mean over units and steps of θ²)",
               "only the scale-invariant kernels train (classifier and BatchNorm affine frozen)",
               "mean |cos(u, w)|: the radial share of the update u = (a·w_t − w_{t+1})/η; "
               "reported, not a cause: the prediction is for the RMS angle whatever it is; the "
               "signed mean enters the exact identity (β₁ = 0: cos θ = a − η⟨u,w⟩/X at constant "
               "norm), so a mean cos(u, w) of order −ηλ_w·√X/‖u‖ ≈ −10⁻³ moves θ by percents",
               "relaxation times: the norm's relaxation rate 1 − a² ≈ 2ηλ_w times the steps "
               "before the window"],
        context={"model": str(m["model"]), "data": str(m["data"]), "steps": int(T)})


def figure(v, kind, report_dir):
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    th, ts = list(v.measured["θ_rms"].values()), list(v.predicted.values())
    ax.plot(ts, th, "o", label="measured RMS over units")
    lim = [min(th + ts) / 1.5, max(th + ts) * 1.5]
    ax.plot(lim, lim, "k-", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="θ* (sympy)", ylabel="per-unit RMS angle (rad)",
           title=f"{kind.upper()}: measured vs rotational-equilibrium angle")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, report_dir, f"E2-{kind}-{MODEL}.png")
    plt.close(fig)
    return path


def run_setting(m: dict, kind: str) -> dict:
    s = {"model": "ConvNet (8, 16 channels), BatchNorm2d after each conv", "data": m["data"],
         "steps": int(m["theta2"].shape[1]), "batch": int(m["batch"]),
         "trains": "the scale-invariant tensors only (classifier and normalization affine "
                   "parameters frozen at init)", "start": "default init", "precision": "float32",
         "seeds": [int(m["seed"])], "optimizer": OPTIMIZER[kind],
         "augment": "random crop (pad 4) + flip" if m["augment"] else "none"}
    s["deviations"] = setting.deviations(s)
    return s


@pytest.mark.parametrize("kind", ["sgdw", "adamw"])
def test_decoupled_decay_per_unit_rms_angle_is_kossons_rotational_equilibrium(
        kind, suite, images, record_verdict):
    m = measure(kind, suite.budget, images)
    v = judge(m)
    v.figures = [figure(v, kind, suite.report_dir)]
    v.setting = run_setting(m, kind)
    record_verdict(v, measurements=m)

