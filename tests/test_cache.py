"""The disk cache (wd_claims.cache) and the engine's use of it: round trip, atomic commit, corrupt
or uncommitted entries never trusted (warned about, deleted, recomputed), no pickle, ``fresh``."""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from wd_claims.cache import Cache, CorruptCacheWarning
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.train import METRICS_KT, METRICS_KTP, TrainConfig, train

FIELDS = {"config": {"etas": [0.1, 0.3], "steps": 5}, "device": "cpu", "code": "abc"}
ARRAYS = {"metrics/sqnorm": np.arange(12.0).reshape(2, 3, 2), "test/loss": np.array([1.5, 2.0]),
          "checkpoints/0/1/bn.num_batches_tracked": np.array(3, dtype=np.int64)}
META = {"tensors": ["conv.weight", "all 3x3 conv kernels"], "diverged": [None, "config 1 …"]}
ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("single_thread")


def stored(tmp_path) -> tuple[Cache, Path, Path]:
    cache = Cache(tmp_path)
    key = cache.store(FIELDS, ARRAYS, META)
    return (cache, *cache.paths(key))


def test_an_entry_round_trips_with_its_arrays_and_metadata(tmp_path):
    cache, npz, sidecar = stored(tmp_path)
    arrays, meta = cache.load(FIELDS)
    assert meta == META and arrays.keys() == ARRAYS.keys()
    for name, array in ARRAYS.items():
        assert arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(arrays[name], array)
    record = json.loads(sidecar.read_text())
    assert record["fields"] == FIELDS and record["bytes"] == npz.stat().st_size


def test_the_key_is_the_hash_of_the_fields_in_any_order():
    reordered = dict(reversed(list(FIELDS.items())))
    assert Cache.key(reordered) == Cache.key(FIELDS)
    assert Cache.key({**FIELDS, "device": "cuda"}) != Cache.key(FIELDS)


def test_arrays_without_their_sidecar_are_never_trusted(tmp_path, recwarn):
    cache, _, sidecar = stored(tmp_path)
    sidecar.unlink()                       # what a run killed before its commit leaves
    assert cache.load(FIELDS) is None
    assert not recwarn.list                # not corrupt: simply not committed


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "garbage sidecar", "no arrays"])
def test_a_damaged_entry_is_reported_deleted_and_not_trusted(tmp_path, damage):
    cache, npz, sidecar = stored(tmp_path)
    data = npz.read_bytes()
    if damage == "truncate":
        npz.write_bytes(data[: len(data) // 2])
    elif damage == "flip a byte":
        npz.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "garbage sidecar":
        sidecar.write_text('{"format": 1, "key": ')
    else:
        npz.unlink()
    with pytest.warns(CorruptCacheWarning, match=npz.name):
        assert cache.load(FIELDS) is None
    assert not npz.exists() and not sidecar.exists()


def test_the_cache_never_unpickles(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(TypeError, match="never pickle"):
        cache.store(FIELDS, {"x": np.array([{"a": 1}], dtype=object)}, {})
    # An entry whose (checksummed) npz holds a pickled object array: refused, not unpickled.
    key = cache.store(FIELDS, ARRAYS, META)
    npz, sidecar = cache.paths(key)
    np.savez(npz, x=np.array([{"a": 1}], dtype=object))        # allow_pickle defaults to True
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))
    with pytest.warns(CorruptCacheWarning, match="allow_pickle"):
        assert cache.load(FIELDS) is None


def _child(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a new Python process (another process, as far as ``fresh`` goes)."""
    code = textwrap.dedent(f"""
        import numpy as np
        from wd_claims import cache as c
        FIELDS = {FIELDS!r}
        ARRAYS = {{"metrics/sqnorm": np.arange(12.0).reshape(2, 3, 2)}}
        cache = c.Cache({str(tmp_path)!r})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_a_process_killed_between_arrays_and_sidecar_leaves_nothing_trusted(tmp_path, recwarn):
    done = _child(tmp_path, """
        import os
        real = c._atomic_write
        def write_then_die(path, data):
            if path.suffix == ".json":
                os._exit(9)                  # killed after the arrays, before the commit marker
            real(path, data)
        c._atomic_write = write_then_die
        cache.store(FIELDS, ARRAYS, {})
    """)
    assert done.returncode == 9, done.stderr
    cache = Cache(tmp_path)
    npz, sidecar = cache.paths(cache.key(FIELDS))
    assert npz.exists() and not sidecar.exists()
    assert cache.load(FIELDS) is None and not recwarn.list


def test_fresh_ignores_entries_the_session_did_not_write_but_reuses_its_own(tmp_path):
    assert _child(tmp_path, "cache.store(FIELDS, ARRAYS, {})").returncode == 0
    written: set[tuple[str, str]] = set()                          # the session's own entries
    assert Cache(tmp_path).load(FIELDS) is not None
    assert Cache(tmp_path, fresh=True, written=written).load(FIELDS) is None
    Cache(tmp_path, fresh=True, written=written).store(FIELDS, ARRAYS, META)  # the first claim
    assert Cache(tmp_path, fresh=True, written=written).load(FIELDS)[1] == META  # a later one
    assert Cache(tmp_path, fresh=True).load(FIELDS) is None       # another session's: ignored


def test_fresh_trusts_an_entry_only_in_the_folder_the_session_wrote_it_to(tmp_path):
    written: set[tuple[str, str]] = set()
    Cache(tmp_path / "a", written=written).store(FIELDS, ARRAYS, META)
    assert written == {(str((tmp_path / "a").resolve()), Cache.key(FIELDS))}
    assert _child(tmp_path / "b", "cache.store(FIELDS, ARRAYS, {})").returncode == 0
    assert Cache(tmp_path / "b").load(FIELDS) is not None          # there, written by another
    assert Cache(tmp_path / "b", fresh=True, written=written).load(FIELDS) is None


# --- the engine through the cache ------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    return (DeviceData.from_images(standin_cifar(128)),
            DeviceData.from_images(standin_cifar(64, train=False)))


CONFIG = TrainConfig(etas=(0.1, 0.5), lams=(0.01, 0.0), steps=4, batch_size=32,
                     model="conv_groupnorm", checkpoints=(0, 2))


def assert_same_run(a, b):
    assert a.tensors == b.tensors and a.diverged == b.diverged
    for m in METRICS_KTP + METRICS_KT:
        np.testing.assert_array_equal(a.metrics[m], b.metrics[m], m)
    assert sorted(a.checkpoints) == sorted(b.checkpoints) == [0, 2, 4]
    for step, states in a.checkpoints.items():
        for mine, theirs in zip(states, b.checkpoints[step], strict=True):
            assert mine.keys() == theirs.keys()
            for name in mine:
                np.testing.assert_array_equal(mine[name], theirs[name], name)
    for m in ("loss", "accuracy"):
        np.testing.assert_array_equal(a.test[m], b.test[m])
        np.testing.assert_array_equal(a.train_eval[m], b.train_eval[m])


def test_a_cached_run_returns_what_was_trained(tmp_path, data):
    first = train(CONFIG, *data, cache=Cache(tmp_path), progress=False)
    again = train(CONFIG, *data, cache=Cache(tmp_path), progress=False)
    assert not first.from_cache and again.from_cache and again.seconds == 0
    assert_same_run(first, again)
    torch.testing.assert_close(again.model(1, 2).state_dict(), first.model(1, 2).state_dict())


def test_a_corrupt_cached_run_is_warned_about_and_retrained(tmp_path, data):
    cache = Cache(tmp_path)
    first = train(CONFIG, *data, cache=cache, progress=False)
    (npz,) = tmp_path.glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:-64])
    with pytest.warns(CorruptCacheWarning, match=npz.name):
        again = train(CONFIG, *data, cache=cache, progress=False)
    assert not again.from_cache
    assert_same_run(first, again)
    assert train(CONFIG, *data, cache=cache, progress=False).from_cache   # re-cached


def test_a_cached_run_with_wrong_shapes_is_not_trusted(tmp_path, data):
    cache = Cache(tmp_path)
    train(CONFIG, *data, cache=cache, progress=False)
    (sidecar,) = tmp_path.glob("*.json")
    record = json.loads(sidecar.read_text())
    arrays, meta = cache.load(record["fields"])
    arrays["metrics/loss"] = arrays["metrics/loss"][:, :-1]          # one step missing
    cache.store(record["fields"], arrays, meta)
    with pytest.warns(CorruptCacheWarning, match="metrics/loss has shape"):
        assert not train(CONFIG, *data, cache=cache, progress=False).from_cache


def test_the_cache_key_covers_the_data_and_the_test_set(tmp_path, data):
    cache = Cache(tmp_path)
    train(CONFIG, *data, cache=cache, progress=False)
    assert not train(CONFIG, data[0], None, cache=cache, progress=False).from_cache
    fewer = DeviceData(data[0].x[:96], data[0].y[:96], data[0].name, data[0].real)
    assert not train(CONFIG, fewer, data[1], cache=cache, progress=False).from_cache
    assert len(list(tmp_path.glob("*.json"))) == 3
