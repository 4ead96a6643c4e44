"""Data: missing, empty or corrupt CIFAR-10 folders; the stand-in; batching (wd_claims/data.py).

Real CIFAR-10 is not needed: every folder here is built in a temporary directory, and torchvision's
own md5 integrity check is what rejects the corrupt one.
"""

import pytest
import torch

from wd_claims import data
from wd_claims.data import DataUnavailable, diagnose_data_dir, load_cifar10, resolve


def corrupt_cifar(root):
    """A ``cifar-10-batches-py`` whose files have the right names and junk contents."""
    folder = root / data.CIFAR_FOLDER
    folder.mkdir(parents=True)
    for name in data.CIFAR_FILES:
        (folder / name).write_bytes(b"not a pickle, not CIFAR-10\n" * 10)
    return root


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: p, "holds no cifar-10-batches-py folder"),
    (lambda p: (p / "cifar-10-batches-py").mkdir() or p / "cifar-10-batches-py",
     "is the cifar-10-batches-py folder itself; pass the folder that holds it"),
    (lambda p: (p / "cifar-10-batches-py").mkdir() or p, "lacks data_batch_1"),
], ids=["missing", "empty", "inner-folder", "no-files"])
def test_a_visibly_broken_data_folder_is_named_with_what_is_wrong(tmp_path, make, message):
    root = make(tmp_path)
    assert message in diagnose_data_dir(root)
    with pytest.raises(DataUnavailable, match="add --download") as info:
        load_cifar10(root, train=True)
    assert message in str(info.value)


def test_a_corrupt_folder_fails_torchvisions_integrity_check(tmp_path):
    root = corrupt_cifar(tmp_path)
    assert diagnose_data_dir(root) == ""  # the names are all there: only md5 can tell
    with pytest.raises(DataUnavailable, match="fails torchvision's md5 integrity check"):
        load_cifar10(root, train=True)


@pytest.mark.parametrize("require_real", [False, True])
def test_an_explicitly_given_broken_folder_is_never_replaced_by_the_stand_in(tmp_path,
                                                                             require_real):
    with pytest.raises(DataUnavailable):
        resolve(corrupt_cifar(tmp_path), download=False, n_train=8, n_test=8,
                require_real=require_real)


def test_without_a_folder_the_stand_in_serves_unless_cifar_is_required():
    train, test = resolve(None, download=False, n_train=8, n_test=4, require_real=False)
    assert not train.real and train.name == data.STANDIN_NAME and len(test.y) == 4
    with pytest.raises(DataUnavailable, match="--data-dir"):
        resolve(None, download=False, n_train=8, n_test=4, require_real=True)


def test_the_stand_in_is_the_same_every_time_and_differs_between_train_and_test():
    a, b = data.standin_cifar(32), data.standin_cifar(32)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == (32, 3, 32, 32) and a.x.dtype == torch.uint8
    assert not torch.equal(a.x, data.standin_cifar(32, train=False).x)


def test_environment_variables_configure_the_folder_and_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
    monkeypatch.setenv(data.ENV_DOWNLOAD, "0")
    assert data.data_dir_from_env(None) == tmp_path and not data.download_allowed(False)
    assert data.data_dir_from_env(str(tmp_path / "x")) == tmp_path / "x"  # the option wins
    monkeypatch.setenv(data.ENV_DOWNLOAD, "1")
    assert data.download_allowed(False)


def test_epoch_indices_cover_each_epoch_without_replacement():
    idx = data.epoch_indices(10, 4, 5, torch.Generator().manual_seed(0))
    assert idx.shape == (5, 4)
    for epoch in (idx[0:2], idx[2:4]):  # 10 // 4 = 2 batches per epoch
        assert len(set(epoch.flatten().tolist())) == 8
    with pytest.raises(ValueError, match="exceeds"):
        data.epoch_indices(3, 4, 1, torch.Generator())


def test_augmentation_is_determined_by_its_generator():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = data.augment(x, torch.Generator().manual_seed(1), pad=2)
    b = data.augment(x, torch.Generator().manual_seed(1), pad=2)
    assert a.shape == x.shape and torch.equal(a, b)
