"""Real images besides CIFAR-10 (``--data digits`` and ``--data MODULE:FACTORY``), validated."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import replace

import pytest
import torch

from wd_claims import setting
from wd_claims.data import DataUnavailable, DeviceData
from wd_claims.datasets import (
    DIGITS_NAME,
    check_source,
    load,
    load_digits_split,
    load_factory,
    preflight,
)
from wd_claims.run_config import TrainConfig
from wd_claims.train import train

pytestmark = pytest.mark.usefixtures("single_thread")


def test_digits_are_the_real_scikit_learn_images_at_the_models_input_shape():
    from sklearn.datasets import load_digits

    train_images, test_images = load_digits_split(10_000, 10_000)
    assert train_images.x.shape == (1437, 3, 32, 32) and test_images.x.shape == (360, 3, 32, 32)
    assert train_images.x.dtype == torch.uint8 and train_images.real
    assert not train_images.mirror and train_images.name == DIGITS_NAME
    # every 4×4 block of every channel is one original pixel, scaled 0–16 → 0–255
    originals = torch.from_numpy(load_digits().images)
    block = train_images.x[:, 0, ::4, ::4].double() * 16 / 255
    matches = (block.flatten(1).unsqueeze(1) - originals.flatten(1).unsqueeze(0)).abs().amax(2)
    assert (matches.amin(1) < 16 / 255).all()      # each training image is a digit of the set
    assert torch.equal(train_images.x[:, :, 1::4, 2::4], train_images.x[:, :, ::4, ::4])
    assert torch.equal(train_images.x[:, 1], train_images.x[:, 2])
    # the split is fixed, disjoint, and both halves hold every class
    again, _ = load_digits_split(10_000, 10_000)
    assert torch.equal(again.x, train_images.x)
    assert set(train_images.y.tolist()) == set(test_images.y.tolist()) == set(range(10))
    # normalized by the training images' own statistics
    x = DeviceData.from_images(train_images).x
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_digits_are_augmented_by_the_crop_alone_and_the_setting_says_so():
    """No image of a digit is mirrored (measured in the batch stream); the same data declared
    mirror-symmetric are flipped about half the time, so the measurement can see a flip."""
    images, _ = load_digits_split(256, 1)
    data = DeviceData.from_images(images)
    config = TrainConfig(etas=(0.1,), lams=(1e-3,), steps=8, batch_size=16, width=4,
                         evaluate=False, data=data.name, n_train=len(data))
    ran = train(config, data, progress=False)
    assert ran.flipped == 0.0 and 0.9 < ran.augmented <= 1.0
    said = setting.of_run(config, data.name, ran.augmented, ran.flipped)["augment"]
    assert said.startswith("random crop (pad 4) only, no flip")
    mirrored = train(config, replace(data, mirror=True), progress=False)
    assert 0.35 < mirrored.flipped < 0.65
    said = setting.of_run(config, data.name, mirrored.augmented, mirrored.flipped)["augment"]
    assert said.startswith("random crop (pad 4) + flip")


FACTORIES = textwrap.dedent("""
    import torch

    def images(n):
        return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)

    def good():
        return (images(40), torch.arange(40) % 10), (images(20), torch.arange(20) % 10)

    def float_images():
        return (images(40).float(), torch.arange(40) % 10), (images(20), torch.arange(20) % 10)

    def one_channel():
        return (images(40)[:, :1], torch.arange(40) % 10), (images(20), torch.arange(20) % 10)

    def label_eleven():
        return (images(40), torch.arange(40) % 12), (images(20), torch.arange(20) % 10)

    def float_labels():
        return (images(40), torch.zeros(40)), (images(20), torch.arange(20) % 10)

    def short_labels():
        return (images(40), torch.arange(30) % 10), (images(20), torch.arange(20) % 10)

    def numpy_images():
        return (images(40).numpy(), torch.arange(40) % 10), (images(20), torch.arange(20) % 10)

    def empty():
        return (images(0), torch.zeros(0, dtype=torch.int64)), (images(20), torch.arange(20) % 10)

    def flat():
        return images(40), torch.arange(40) % 10

    def raises():
        raise OSError("the share is not mounted")
    """)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "user_data.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_data"
    sys.modules.pop("user_data", None)


def test_a_users_factory_gives_validated_images_named_by_their_content(factories):
    train_images, test_images = load_factory(f"{factories}:good", 32, 8)
    assert train_images.x.shape == (32, 3, 16, 16) and test_images.x.shape == (8, 3, 16, 16)
    assert train_images.name.startswith(f"{factories}:good (user data, sha256 ")
    assert train_images.mirror and train_images.real
    assert load_factory(f"{factories}:good", 32, 8)[0].name != train_images.name  # new pixels


@pytest.mark.parametrize(("factory", "said"), [
    ("float_images", "images must be uint8 (0–255), got torch.float32"),
    ("one_channel", "images must be (N, 3, H, W) with H, W ≥ 8, got (40, 1, 16, 16)"),
    ("label_eleven", "labels must lie in [0, 10), got [0, 11]"),
    ("float_labels", "labels must be a 1-D integer tensor, got torch.float32 (40,)"),
    ("short_labels", "40 images but 30 labels"),
    ("empty", "(train): no images"),
    ("numpy_images", "images and labels must be torch tensors, got ndarray and Tensor"),
    ("flat", "the factory must return ((x_train, y_train), (x_test, y_test))"),
    ("raises", "the factory raised OSError: the share is not mounted"),
    ("missing", "cannot import missing from user_data"),
])
def test_bad_user_data_is_a_clear_error_naming_what_is_wrong(factories, factory, said):
    with pytest.raises(DataUnavailable) as caught:
        preflight(f"{factories}:{factory}", None, False)
    assert said in str(caught.value)


@pytest.mark.parametrize("source", ["mnist", "user data:make", ":make", "pkg.mod:", "a-b:c"])
def test_an_unknown_data_source_is_refused_with_the_choices(source):
    with pytest.raises(ValueError, match="expected one of auto, standin, cifar10, digits or "
                                         "MODULE:FACTORY"):
        check_source(source)


def test_the_stand_in_is_refused_where_real_images_are_required():
    with pytest.raises(DataUnavailable, match="needs real images; the stand-in is synthetic"):
        load("standin", None, download=False, n_train=8, n_test=8, require_real=True)


def test_naming_cifar10_without_its_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailable, match="--data cifar10: .* holds no cifar-10-batches-py"):
        preflight("cifar10", tmp_path, False)
