"""Sharpness on the unit sphere (wd_claims.probes), on inputs whose answers are computable by hand.

The scale-invariant quadratic f(w) = uᵀAu, u = w/‖w‖, has ∇f(u) = 2(Au − (uᵀAu)u) and, on the
sphere, the Hessian P(2A − 2(uᵀAu)I)P with P = I − uuᵀ. With A = diag(0, 10, 6, 5) and
u = (e₁ + e₂)/√2 (uᵀAu = c = 5) the tangent space is spanned by t = (e₁ − e₂)/√2, e₃, e₄ with
curvatures 2(a₁ + a₂)/2 − 2c = 0, 2(a₃ − c) = 2 and 2(a₄ − c) = 0: the sharpness is **2**.
The Euclidean Hessian there is diag(a₂ − a₁, a₁ − a₂, 2(a₃ − c), 2(a₄ − c)) = diag(10, −10, 2, 0):
its top eigenvalue **10** lives in the (e₁, e₂) plane, which holds the radial direction u.
"""

import math

import numpy as np
import pytest
import torch
from wd_claims.models import MLP

from wd_claims.probes import sharpness_on_sphere, sphere_hvp, tangent_projection, top_eigenvalue

A_DIAG = (0.0, 10.0, 6.0, 5.0)
SPHERE_TOP, EUCLID_TOP = 2.0, 10.0      # by hand, see the module docstring
TOL = 1e-8                               # ARPACK's relative tolerance in these float64 tests
# A converged Ritz value of a symmetric operator errs by ≲ residual² / gap ≪ TOL; we allow TOL
# itself relative to the value (plus float64 rounding of the products, ~1e-15).
RTOL = TOL


def quadratic(a_diag, q=None):
    """loss_fn(tensors) for f(w) = uᵀ(QAQᵀ)u on one tensor, and the matrix QAQᵀ."""
    a = torch.diag(torch.tensor(a_diag, dtype=torch.float64))
    if q is not None:
        a = q @ a @ q.T

    def loss_fn(tensors):
        (w,) = tensors
        u = w / w.norm()
        return u @ a @ u

    return loss_fn, a


def point(scale=3.0, q=None):
    w = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64) * scale / math.sqrt(2)
    return w if q is None else q @ w


def test_sharpness_of_the_scale_invariant_quadratic_is_the_hand_computed_value():
    loss_fn, _ = quadratic(A_DIAG)
    matvec, dim = sphere_hvp(loss_fn, [point(3.0)])  # ‖w‖ = 3: the probe rescales to 1 first
    s = top_eigenvalue(matvec, dim, tol=TOL, ncv=3)
    assert s.converged and dim == 4
    assert s.value == pytest.approx(SPHERE_TOP, rel=RTOL)
    assert s.residual < 1e-6 and s.matvecs >= 2


def test_sharpness_does_not_depend_on_the_basis_or_the_norm():
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))
    loss_fn, _ = quadratic(A_DIAG, q)
    for scale in (2.0**-4, 1.0, 2.0**6):
        matvec, dim = sphere_hvp(loss_fn, [point(scale, q)])
        assert top_eigenvalue(matvec, dim, tol=TOL, ncv=3).value == pytest.approx(SPHERE_TOP,
                                                                                  rel=RTOL)


def test_projection_removes_the_radial_direction_that_the_euclidean_hessian_has():
    loss_fn, a = quadratic(A_DIAG)
    u = point(1.0)
    hess = torch.autograd.functional.hessian(lambda w: loss_fn([w]), u)
    grad = torch.autograd.functional.jacobian(lambda w: loss_fn([w]), u)
    # Euler's relation differentiated: ∇²f(u)·u = −∇f(u) ≠ 0 — the Euclidean Hessian has a radial
    # component, and its top eigenvalue (10) is not the sphere's (2).
    torch.testing.assert_close(hess @ u, -grad)
    assert grad.norm() > 1
    assert float(torch.linalg.eigvalsh(hess).max()) == pytest.approx(EUCLID_TOP, rel=1e-12)
    matvec, _ = sphere_hvp(loss_fn, [u])
    assert np.abs(matvec(u.numpy())).max() < 1e-12          # the radial direction maps to 0
    v = np.random.default_rng(1).standard_normal(4)
    assert abs(float(u.numpy() @ matvec(v))) < 1e-12        # every output is tangent


def test_tangent_projection_is_idempotent_and_orthogonal_per_tensor():
    gen = torch.Generator().manual_seed(2)
    us = [torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(2)]
    us = [u / u.norm() for u in us]
    vs = [torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(2)]
    once = tangent_projection(vs, us)
    for p, u in zip(once, us, strict=True):
        assert abs(float((p * u).sum())) < 1e-14
    for a, b in zip(tangent_projection(once, us), once, strict=True):
        torch.testing.assert_close(a, b)


def test_two_tensors_give_the_larger_block_and_scales_weight_each_block():
    # Tensor 1: the quadratic above (sphere curvature 2). Tensor 2: f = vᵀBv, B = diag(0, 3), at
    # v = e₁: tangent e₂ with curvature 2(3 − 0) = 6. The sum's operator is block diagonal, so the
    # top eigenvalue is max(2, 6) = 6; with scales (2, 1) it is max(2²·2, 1²·6) = 8.
    f1, _ = quadratic(A_DIAG)
    b = torch.diag(torch.tensor([0.0, 3.0], dtype=torch.float64))

    def loss_fn(tensors):
        w, v = tensors
        u2 = v / v.norm()
        return f1([w]) + u2 @ b @ u2

    pts = [point(3.0), torch.tensor([0.5, 0.0], dtype=torch.float64)]
    for scales, expected in ((None, 6.0), ((2.0, 1.0), 8.0)):
        matvec, dim = sphere_hvp(loss_fn, pts, scales)
        assert dim == 6
        assert top_eigenvalue(matvec, dim, tol=TOL, ncv=5).value == pytest.approx(expected,
                                                                                 rel=RTOL)


def dense_sphere_sharpness(model, x, y, names):
    """Reference: the dense Hessian over the named tensors at unit norm, projected, eigvalsh."""
    params = dict(model.named_parameters())
    us = [(params[n].detach() / params[n].detach().norm()) for n in names]
    sizes, shapes = [u.numel() for u in us], [u.shape for u in us]

    def flat_loss(flat):
        tensors = [c.view(s) for c, s in zip(flat.split(sizes), shapes, strict=True)]
        out = torch.func.functional_call(model, dict(zip(names, tensors, strict=True)), (x,))
        return torch.nn.functional.cross_entropy(out, y)

    flat = torch.cat([u.reshape(-1) for u in us])
    hess = torch.autograd.functional.hessian(flat_loss, flat)
    proj = torch.block_diag(*[torch.eye(u.numel(), dtype=u.dtype) - torch.outer(u.reshape(-1),
                                                                              u.reshape(-1))
                              for u in us])
    return float(torch.linalg.eigvalsh(proj @ hess @ proj).max())


def test_sharpness_of_a_batchnorm_mlp_matches_the_dense_projected_hessian():
    torch.manual_seed(0)
    model = MLP(in_features=5, hidden=(4, 3), num_classes=3, norm="batch").double().train()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    names = [n for n, p in model.named_parameters() if p.dim() == 2][:-1]  # the hidden linears
    expected = dense_sphere_sharpness(model, x, y, names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    got = sharpness_on_sphere(model, x, y, names, tol=TOL, ncv=10, maxiter=200)
    assert got.converged and got.value == pytest.approx(expected, rel=1e-6)
    for n, p in model.named_parameters():  # the probe works on a copy
        assert torch.equal(p.detach(), before[n])
    # the hidden kernels are scale-invariant (BN follows): rescaling one by 2⁵ changes nothing
    with torch.no_grad():
        dict(model.named_parameters())[names[0]].mul_(2.0**5)
    again = sharpness_on_sphere(model, x, y, names, tol=TOL, ncv=10, maxiter=200)
    assert again.value == pytest.approx(got.value, rel=1e-6)


def test_c10_derivation_gives_the_stability_bound_two_and_its_lambda_slope():
    from wd_claims import theory

    d = theory.c10_flatness()
    assert all(d.proved.values()), d.text
    assert d.exprs["eta_h_max"] == 2
    # η = 0.1, h = 19 is stable (ηh = 1.9), h = 21 is not: |1 − ηh| = 0.9 vs 1.1.
    mult = d.fn("multiplier", theory.eta, theory.h_curv)
    assert abs(mult(0.1, 19.0)) < 1 < abs(mult(0.1, 21.0))
    # ηλ = 0.01: slope −1/(2(1 − s)(1 − 2s)) = −1/(2·0.99·0.98) ≈ −0.51536
    slope = d.fn("loglog_slope_in_lambda", theory.s_el)
    assert slope(0.01) == pytest.approx(-1 / (2 * 0.99 * 0.98), rel=1e-12)
