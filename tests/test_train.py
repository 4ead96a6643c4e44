"""The training engine (wd_claims.train): exact SGD identities in float64, K at once equals K
separate runs and a plain ``torch.optim.SGD`` loop, divergence, determinism, checkpoints.

Exact identities run in float64 with the normalizations' eps numerically zero
(``wd_claims.invariance.EXACT_EPS``), where ⟨g, w⟩ = 0 holds to rounding (C2); each has a negative
control that the same criterion must reject. Smoke-sized models, 256 stand-in images, seconds.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from wd_claims.config import torch_weight_decay
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.invariance import EXACT_EPS
from wd_claims.train import (
    ALL_3X3,
    ALL_INVARIANT,
    METRICS_KT,
    METRICS_KTP,
    TrainConfig,
    batch_stream,
    build_model,
    evaluate,
    tracked_tensors,
    train,
)

U64 = np.finfo(np.float64).eps / 2          # unit roundoff of float64


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data():
    return (DeviceData.from_images(standin_cifar(256)),
            DeviceData.from_images(standin_cifar(128, train=False)))


def exact_config(**kw) -> TrainConfig:
    """float64, eps ≈ 0: the scale-invariant tensors are invariant up to rounding."""
    base = dict(model="conv_groupnorm", steps=12, batch_size=32, dtype="float64",
                norm_eps=EXACT_EPS, evaluate=False)
    return TrainConfig(**{**base, **kw})


def tensor_sizes(result) -> np.ndarray:
    """(P,) number of entries of each tracked tensor (ALL_3X3: the 3x3 kernels together)."""
    state = result.checkpoints[result.config.steps][0]
    sizes = [state[n].size for n in result.tensors[:-1]]
    kernels = [state[n].size for n in result.tensors[:-1] if state[n].shape[-2:] == (3, 3)]
    return np.array(sizes + [sum(kernels)])


def norm_recursion_excess(result, shrink):
    """(K, T−1, P): |x_{t+1} − (s²x_t + η²‖g_t‖²)| / bound, x = ‖w‖², s = ``shrink`` (K,).

    The bound is float64 rounding, derived: each entry of w_{t+1} = fl(w − η·fl(g + 2λw)) is
    rounded at most three times, |δ_i| ≤ 3u(|w_i| + η|g_i + 2λw_i|), so x_{t+1} moves by
    ≤ 2‖w_{t+1}‖·3u(‖w_t‖ + η‖g_t‖ + 2ηλ‖w_t‖); each of x_{t+1}, x_t, ‖g_t‖² is a sum of n
    products, off by ≤ n·u of itself (recursive summation, Higham 2002 §4.2); and the cross term
    2ηs⟨g_t, w_t⟩, zero in exact arithmetic, is taken from the measured cosine.
    """
    eta = np.asarray(result.config.etas)[:, None, None]
    lam = np.asarray(result.config.lams)[:, None, None]
    x, g = result.metrics["sqnorm"], result.metrics["gnorm"]
    cos = result.metrics["cos_gw"]
    s = np.asarray(shrink)[:, None, None]
    x0, x1, g0, c0 = x[:, :-1], x[:, 1:], g[:, :-1], cos[:, :-1]
    n = tensor_sizes(result)[None, None, :]
    predicted = s**2 * x0 + eta**2 * g0**2
    bound = (6 * U64 * np.sqrt(x1) * (np.sqrt(x0) * (1 + 2 * eta * lam) + eta * g0)
             + n * U64 * (x1 + s**2 * x0 + eta**2 * g0**2)
             + 2 * eta * s * np.sqrt(x0) * g0 * np.abs(c0))
    return np.abs(x1 - predicted) / bound


def test_plain_sgd_adds_exactly_eta_squared_gradient_norm_squared_each_step(data):
    result = train(exact_config(etas=(0.1, 0.7), lams=(0.0, 0.0)), data[0], progress=False)
    excess = norm_recursion_excess(result, shrink=[1.0, 1.0])
    assert np.isfinite(excess).all()
    assert excess.max() <= 1, f"‖w_(t+1)‖² − ‖w_t‖² − η²‖g_t‖² beyond rounding: {excess.max():.3g}"


def test_momentum_breaks_the_pythagorean_identity(data):
    """The negative control of the test above: buf carries past gradients, not orthogonal to w."""
    result = train(exact_config(etas=(0.1,), lams=(0.0,), momentum=0.9), data[0], progress=False)
    excess = norm_recursion_excess(result, shrink=[1.0])
    assert excess[:, 1:].min() > 1e3, "momentum passed the exact plain-SGD criterion"


def test_weight_decay_contracts_the_norm_by_one_minus_two_eta_lambda(data):
    config = exact_config(etas=(0.1, 0.5), lams=(0.05, 0.3))
    result = train(config, data[0], progress=False)
    eta, lam = np.array(config.etas), np.array(config.lams)
    assert norm_recursion_excess(result, shrink=1 - 2 * eta * lam).max() <= 1
    # Control: the factor-2 slip (weight_decay = λ instead of 2λ) is rejected by the same bound.
    assert norm_recursion_excess(result, shrink=1 - eta * lam).min() > 1e3


def test_k_configurations_at_once_equal_k_separate_runs(data):
    common = dict(model="resnet8", width=4, steps=10, batch_size=32, checkpoints=(5,))
    joint = train(TrainConfig(etas=(0.1, 0.4, 1.0), lams=(0.01, 0.0, 0.1),
                              init_scales=(1.0, 0.5, 2.0), **common), *data, progress=False)
    for k, (eta, lam, scale) in enumerate([(0.1, 0.01, 1.0), (0.4, 0.0, 0.5), (1.0, 0.1, 2.0)]):
        alone = train(TrainConfig(etas=(eta,), lams=(lam,), init_scales=(scale,), **common),
                      *data, progress=False)
        for m in METRICS_KTP + METRICS_KT:
            torch.testing.assert_close(joint.metrics[m][k], alone.metrics[m][0], msg=m)
        for step in (5, 10):
            for name, array in alone.checkpoints[step][0].items():
                np.testing.assert_array_equal(joint.checkpoints[step][k][name], array, name)
        torch.testing.assert_close(joint.test["loss"][k], alone.test["loss"][0])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_engine_matches_a_plain_torch_sgd_loop(data, momentum):
    """The flat-buffer engine against the textbook loop: same batches, same update, float64."""
    config = TrainConfig(etas=(0.3,), lams=(0.02,), steps=8, batch_size=32, model="resnet8",
                         width=4, dtype="float64", momentum=momentum, evaluate=False)
    result = train(config, data[0], progress=False)
    model = build_model(config)
    sgd = torch.optim.SGD(model.parameters(), lr=0.3, momentum=momentum,
                          weight_decay=torch_weight_decay(0.02))
    losses = []
    for x, y in batch_stream(config, data[0]):
        sgd.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        sgd.step()
        losses.append(loss.item())
    torch.testing.assert_close(result.metrics["loss"][0], np.array(losses))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(torch.from_numpy(result.checkpoints[8][0][name]), value,
                                   msg=name)


def test_metrics_match_a_direct_computation_from_two_checkpoints(data):
    config = exact_config(etas=(0.4,), lams=(0.1,), steps=3, checkpoints=(0, 1))
    result = train(config, data[0], progress=False)
    model = result.model(0, 0)
    x, y = next(batch_stream(config, data[0]))
    F.cross_entropy(model(x), y).backward()
    grads = dict((n, p.grad.numpy()) for n, p in model.named_parameters())
    before, after = result.checkpoints[0][0], result.checkpoints[1][0]
    eta, lam = 0.4, 0.1
    for p, name in enumerate(result.tensors[:-1]):
        w, v, g = before[name].ravel(), after[name].ravel(), grads[name].ravel()
        u, u_next = w / np.linalg.norm(w), v / np.linalg.norm(v)
        step = eta * g / ((1 - 2 * eta * lam) * np.linalg.norm(w))
        expected = {"sqnorm": w @ w, "gnorm": np.linalg.norm(g),
                    "cos_gw": g @ w / np.linalg.norm(g) / np.linalg.norm(w),
                    "cos_step": u @ u_next, "du_pred": np.linalg.norm(step),
                    "du_resid": np.linalg.norm(u_next - u + step),
                    "du_resid_article": np.linalg.norm(u_next - u + eta * g / np.linalg.norm(w))}
        for m, value in expected.items():
            torch.testing.assert_close(result.metrics[m][0, 0, p], value, msg=f"{m} {name}")


def test_all_3x3_concatenates_every_invariant_3x3_kernel_of_resnet8(data):
    config = TrainConfig(etas=(0.2,), lams=(0.01,), steps=3, batch_size=32, model="resnet8",
                         width=4, evaluate=False)
    result = train(config, data[0], progress=False)
    assert result.tensors[-1] == ALL_3X3 and len(result.tensors) == 9 + 1  # 7 3x3 + 2 1x1
    state = result.checkpoints[3][0]
    kernels = [p for p, n in enumerate(result.tensors[:-1]) if state[n].shape[-2:] == (3, 3)]
    assert len(kernels) == 7
    sq = result.metrics["sqnorm"][0]
    torch.testing.assert_close(sq[:, -1], sq[:, kernels].sum(1))


def test_a_model_without_3x3_kernels_tracks_all_its_scale_invariant_tensors_jointly(data):
    result = train(exact_config(model="mlp_batchnorm", etas=(0.1,), lams=(0.0,), steps=2),
                   data[0], progress=False)
    assert result.tensors[-1] == ALL_INVARIANT  # the label says what the joint column holds
    x = result.metrics["sqnorm"]
    np.testing.assert_allclose(x[..., -1], x[..., :-1].sum(-1), rtol=1e-12)  # all of them


def test_a_diverging_configuration_is_reported_with_its_step_while_the_others_finish(data):
    common = dict(steps=10, batch_size=32, model="conv_groupnorm")
    result = train(TrainConfig(etas=(0.1, 1e30), lams=(0.0, 0.0), **common), *data,
                   progress=False)
    assert result.diverged[0] is None
    message = result.diverged[1]
    assert message is not None and message.startswith("config 1 (η=1e+30, λ=0) diverged at step")
    t = int(message.split("step ")[1].split(":")[0])
    for m in METRICS_KTP + METRICS_KT:
        assert np.isfinite(result.metrics[m][1, :t]).all(), m
        assert np.isnan(result.metrics[m][1, t:]).all(), m
    assert np.isnan(result.test["loss"][1]) and np.isfinite(result.test["loss"][0])
    frozen = result.checkpoints[10][1]
    assert all(np.isfinite(a).all() for a in frozen.values()), "frozen parameters not finite"
    alone = train(TrainConfig(etas=(0.1,), lams=(0.0,), **common), *data, progress=False)
    for m in METRICS_KTP + METRICS_KT:
        torch.testing.assert_close(result.metrics[m][0], alone.metrics[m][0], msg=m)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(data):
    config = TrainConfig(etas=(0.3,), lams=(0.01,), steps=6, batch_size=32,
                         model="conv_groupnorm", evaluate=False)
    first, again = (train(config, data[0], progress=False) for _ in range(2))
    for m in METRICS_KTP + METRICS_KT:
        np.testing.assert_array_equal(first.metrics[m], again.metrics[m], m)
    other = train(TrainConfig(**{**config.asdict(), "seed": 1}), data[0], progress=False)
    assert not np.array_equal(first.metrics["loss"], other.metrics["loss"])


def test_checkpoints_hold_the_scaled_init_and_rebuild_the_evaluated_model(data):
    config = TrainConfig(etas=(0.2, 0.2), lams=(0.01, 0.01), steps=4, batch_size=32,
                         model="resnet8", width=4, init_scales=(1.0, 4.0), checkpoints=(0,))
    result = train(config, *data, progress=False)
    invariant, _ = tracked_tensors(build_model(config), (3, 32, 32))
    init = {n: t.numpy() for n, t in build_model(config).state_dict().items()}
    for name, value in init.items():
        scale = 4.0 if name in invariant else 1.0
        np.testing.assert_array_equal(result.checkpoints[0][1][name], scale * value, name)
    for k in range(2):
        loss, accuracy = evaluate(result.model(k), data[1])
        torch.testing.assert_close(loss, float(result.test["loss"][k]))
        assert accuracy == result.test["accuracy"][k]
    with pytest.raises(KeyError, match="no checkpoint at step 2"):
        result.model(0, 2)


def test_eval_images_evaluates_the_first_images_of_each_set_and_nothing_else(data):
    config = TrainConfig(etas=(0.2,), lams=(0.01,), steps=2, batch_size=32, model="resnet8",
                         width=4, eval_images=64)
    result = train(config, *data, progress=False)
    for label, full in (("train_eval", data[0]), ("test", data[1])):
        head = DeviceData(full.x[:64], full.y[:64], full.name, full.real)
        loss, accuracy = evaluate(result.model(0), head)
        torch.testing.assert_close(loss, float(getattr(result, label)["loss"][0]))
        assert accuracy == getattr(result, label)["accuracy"][0]
    with pytest.raises(ValueError, match="eval_images"):
        TrainConfig(etas=(0.2,), lams=(0.01,), steps=2, eval_images=-1)


def test_freezing_leaves_every_non_invariant_tensor_at_its_init(data):
    config = TrainConfig(etas=(0.5,), lams=(0.05,), steps=5, batch_size=32,
                         model="conv_groupnorm", freeze_non_invariant=True, checkpoints=(0,))
    result = train(config, data[0], progress=False)
    start, end = result.checkpoints[0][0], result.checkpoints[5][0]
    for name in start:
        moved = not np.array_equal(start[name], end[name])
        assert moved == (name in result.tensors), name


def test_config_rejects_what_the_engine_cannot_honour():
    with pytest.raises(ValueError, match="2ηλ < 1"):
        TrainConfig(etas=(1.0,), lams=(0.5,), steps=1)
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(etas=(1.0,), lams=(0.0,), steps=1, dtype="float16")
    with pytest.raises(ValueError, match="checkpoints"):
        TrainConfig(etas=(1.0,), lams=(0.0,), steps=3, checkpoints=(4,))


@pytest.mark.parametrize("path", ["loop", "fused"])
def test_the_setting_states_the_augmentation_that_ran_not_the_one_configured(data, monkeypatch,
                                                                              path, tmp_path):
    """The augmentation a verdict's setting names is measured in the batch stream: an engine whose
    augment_drawn call silently does nothing (replaced by ``pass``) trains with augment=True, and
    its setting says "none", through the cache too."""
    from wd_claims import run_parts, setting
    from wd_claims.cache import Cache

    config = TrainConfig(etas=(0.1,), lams=(0.01,), model="conv_groupnorm", steps=6,
                         batch_size=32, evaluate=False, augment=True, path=path)
    honest = train(config, data[0], progress=False)
    assert 0.9 < honest.augmented <= 1.0          # a crop (pad 4) + flip leaves ≈ 1/162 as it was
    assert setting.of_run(config, "stand-in", honest.augmented)["augment"].startswith(
        "random crop (pad 4) + flip, ")
    monkeypatch.setattr(run_parts, "augment_drawn", lambda x, shift, flip, pad=4: x)
    cache = Cache(tmp_path)
    silent = train(config, data[0], progress=False, cache=cache)
    again = train(config, data[0], progress=False, cache=cache)
    assert silent.augmented == again.augmented == 0.0 and again.from_cache
    said = setting.of_run(config, "stand-in", again.augmented)["augment"]
    assert said.startswith("none — configured random crop (pad 4) + flip, but no training image")
    off = TrainConfig(**{**config.asdict(), "augment": False})
    assert train(off, data[0], progress=False).augmented == 0.0
    assert setting.of_run(off, "stand-in", 0.0)["augment"] == "none"
