"""The E1/E2 derivations of wd_claims.theory checked on numbers: momentum iterations on random
float64 vectors whose new gradient is made orthogonal to the current weights (the derivations'
only assumption), and the closed forms against the two optimizers PyTorch actually ships."""

from functools import cache

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wd_claims import theory
from wd_claims.config import torch_weight_decay

RTOL = 1e-9  # float64 arithmetic on O(1) numbers over a handful of operations

etas = st.floats(1e-3, 1.0)
decays = st.floats(1e-3, 0.2)
momenta = st.floats(0.0, 0.95)
seeds = st.integers(0, 2**31 - 1)


@cache
def derivation(name):
    return getattr(theory, name)()


def momentum_run(eta, decay, mu, seed, steps, decoupled, n=40):
    """(X, P): ‖w_t‖² (steps,) and ⟨w_t, w_{t+1}⟩ (steps,) of momentum SGD whose gradient g_t is
    a random vector projected orthogonal to w_t. Coupled: decay = PyTorch's wd; decoupled:
    decay = λ_w (w ← (1 − ηλ_w)w − η·buf)."""
    rng = np.random.default_rng(seed)
    w, v = rng.normal(size=n), np.zeros(n)
    X, P = [], []
    for _ in range(steps):
        g = rng.normal(size=n) / np.linalg.norm(w)      # ‖g‖ ∝ 1/‖w‖, as C3
        g -= (g @ w) / (w @ w) * w
        if decoupled:
            v = mu * v + g
            w_new = (1 - eta * decay) * w - eta * v
        else:
            v = mu * v + g + decay * w
            w_new = w - eta * v
        X.append(w @ w)
        P.append(w @ w_new)
        w = w_new
    return np.array(X), np.array(P)


@settings(max_examples=40, deadline=None)
@given(etas, decays, momenta, seeds)
def test_coupled_momentum_identity_holds_step_by_step(eta, lam, mu, seed):
    X, P = momentum_run(eta, torch_weight_decay(lam), mu, seed, 20, decoupled=False)
    lhs = P[1:] + mu * P[:-1]
    assert np.allclose(lhs, (1 + mu - eta * torch_weight_decay(lam)) * X[1:], rtol=RTOL)


@settings(max_examples=40, deadline=None)
@given(etas, st.floats(1e-3, 0.5), momenta, seeds)
def test_decoupled_momentum_identity_holds_step_by_step(eta, lam_w, mu, seed):
    X, P = momentum_run(eta, lam_w, mu, seed, 20, decoupled=True)
    a = 1 - eta * lam_w
    assert np.allclose(P[1:] + mu * a * P[:-1], (a + mu) * X[1:], rtol=RTOL)


def test_the_stationary_cosines_are_the_derived_ones():
    """Long runs at ηλ = 0.01: the time-averaged cos θ matches sympy's c* to the drift-free
    stationary accuracy (relative fluctuation of the ratio of means ≲ 1e-3 here)."""
    e1 = derivation("e01_momentum_equilibrium").fn("cos_star", theory.eta, theory.lam, theory.mu)
    e2 = derivation("e02_decoupled_decay").fn("cos_star", theory.eta, theory.lam_w, theory.mu)
    for mu in (0.0, 0.5, 0.9):
        X, P = momentum_run(0.1, torch_weight_decay(0.05), mu, 0, 6000, decoupled=False)
        ratio = P[3000:].sum() / X[3000:].sum()       # E[P]/E[X] = c* exactly in stationarity
        assert np.isclose(ratio, e1(0.1, 0.05, mu), rtol=2e-3)
        X, P = momentum_run(0.1, 0.1, mu, 0, 6000, decoupled=True)
        assert np.isclose(P[3000:].sum() / X[3000:].sum(), e2(0.1, 0.1, mu), rtol=2e-3)


def test_the_plain_sgd_control_differs_by_the_derived_factor():
    d = derivation("e01_momentum_equilibrium")
    plain = d.fn("theta_plain_sgd", theory.eta, theory.lam)
    star = d.fn("theta_star", theory.eta, theory.lam, theory.mu)
    for mu in (0.5, 0.9):
        assert np.isclose(plain(1e-2, 1e-6) / star(1e-2, 1e-6, mu), np.sqrt(1 + mu), rtol=1e-4)
    # μ = 0 is C8's arccos(1 − 2ηλ)
    assert np.isclose(star(0.3, 0.02, 0.0), plain(0.3, 0.02), rtol=RTOL)


def test_pytorch_sgd_and_adamw_take_the_steps_the_derivations_assume():
    """SGD(momentum, weight_decay=wd): w₁ = w₀ − η(g + wd·w₀) at the first step; AdamW with
    β₁ = 0: w₁ = (1 − ηλ_w)w₀ − η·update, the decay applied to w₀ (decoupled)."""
    torch.manual_seed(0)
    w0, g = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    p = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.02)
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), w0 - 0.1 * (g + 0.02 * w0))
    q = torch.nn.Parameter(w0.clone())
    opt = torch.optim.AdamW([q], lr=0.1, weight_decay=0.5, betas=(0.0, 0.99), eps=0.0)
    q.grad = g.clone()
    opt.step()
    torch.testing.assert_close(q.detach(), (1 - 0.1 * 0.5) * w0 - 0.1 * torch.sign(g))


def test_adam_random_walk_norm_has_exponent_one_in_eta_over_lambda():
    d = derivation("e02_decoupled_decay")
    C = next(s for s in d.exprs["x_star_random_walk"].free_symbols if s.name == "C")
    x = d.fn("x_star_random_walk", theory.eta, theory.lam_w, theory.mu, C)
    # equal ηλ_w, η/λ_w ten times larger: X* ten times larger (SGD's article claim: √10)
    assert np.isclose(x(0.1, 0.01, 0.9, 100.0) / x(0.01 * np.sqrt(10), 0.1 / np.sqrt(10),
                                                    0.9, 100.0), 10.0, rtol=RTOL)
    assert np.isclose(x(1e-4, 1e-2, 0.5, 100.0), 1e-4 * 100 / (2 * 1e-2), rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-3, 0.3), st.floats(-0.9, 0.9), seeds)
def test_the_norm_balance_gives_the_angle_of_any_decoupled_step(decay, c, seed):
    """w' = a·w − ηu for a u of radial share c (not ⟂ w): cos θ = (a − c·r)e^{−δ/2} from c and
    the measured e^δ = ‖w'‖²/‖w‖² alone (the balance's positive root r = η‖u‖/‖w‖, the only one
    where e^δ > a², as in the claim: δ ≈ 0 per step, a² ≤ 0.98)."""
    d = derivation("e02_decoupled_decay")
    c_sym = next(s for s in d.exprs["cos_balance"].free_symbols if s.name == "c")
    cos_bal = d.fn("cos_balance", theory.eta, theory.lam_w, c_sym, theory.delta)
    r_bal = d.fn("r_balance", theory.eta, theory.lam_w, c_sym, theory.delta)
    rng = np.random.default_rng(seed)
    w, e = rng.normal(size=30), rng.normal(size=30)
    e -= (e @ w) / (w @ w) * w
    u = c * w / np.linalg.norm(w) + np.sqrt(1 - c**2) * e / np.linalg.norm(e)
    u *= rng.uniform(0.05, 0.5) * np.linalg.norm(w)          # r = η‖u‖/‖w‖ at η = 1
    w_new = (1 - decay) * w - u
    dl = np.log((w_new @ w_new) / (w @ w))
    assume(np.exp(dl) > (1 - decay) ** 2 + 1e-6)   # one positive root
    cos = (w @ w_new) / np.sqrt((w @ w) * (w_new @ w_new))
    assert np.isclose(r_bal(1.0, decay, c, dl), np.linalg.norm(u) / np.linalg.norm(w), rtol=RTOL)
    assert np.isclose(cos_bal(1.0, decay, c, dl), cos, rtol=RTOL)


def test_momentum_alone_gives_kossons_radial_share_and_angle():
    """Decoupled momentum with the new increment ⟂ w: the buffer's radial share, averaged as the
    claim averages it (mean ρ/√(mean r²)), is c*(μ), and the balance at c*(μ) is Kosson's θ*."""
    d = derivation("e02_decoupled_decay")
    c_sym = next(s for s in d.exprs["cos_balance"].free_symbols if s.name == "c")
    cos_bal = d.fn("cos_balance", theory.eta, theory.lam_w, c_sym, theory.delta)
    c_mom = d.fn("radial_share_momentum", theory.eta, theory.lam_w, theory.mu)
    cos_star = d.fn("cos_star", theory.eta, theory.lam_w, theory.mu)
    eta, lam_w = 0.1, 0.1
    for mu in (0.0, 0.5, 0.9):
        assert np.isclose(cos_bal(eta, lam_w, c_mom(eta, lam_w, mu), 0.0),
                          cos_star(eta, lam_w, mu), rtol=RTOL)
        X, P = momentum_run(eta, lam_w, mu, 1, 6000, decoupled=True)
        a = 1 - eta * lam_w
        rho = a - P[3000:-1] / X[3000:-1]                 # η⟨u, w⟩/‖w‖² from the step itself
        r2 = X[3001:] / X[3000:-1] - a**2 + 2 * a * rho   # the balance solved for r²
        c = rho.mean() / np.sqrt(r2.mean())
        assert np.isclose(c, c_mom(eta, lam_w, mu), rtol=2e-2, atol=2e-3)
