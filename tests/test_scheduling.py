"""The test suite's own order under pytest-xdist (``tests/conftest.py``): whole modules per
worker, the heaviest handed out first."""

from pathlib import Path

from tests.conftest import HEAVIEST_FIRST, heaviest_first


def test_every_module_named_heaviest_first_exists():
    here = Path(__file__).parent
    assert [name for name in HEAVIEST_FIRST if not (here / f"{name}.py").exists()] == []


def test_the_heaviest_modules_sort_first_and_the_others_keep_their_order():
    names = ["test_cache", HEAVIEST_FIRST[1], "test_data", HEAVIEST_FIRST[0], "test_cache"]
    keys = heaviest_first(names)
    assert sorted(range(len(names)), key=keys.__getitem__) == [3, 1, 0, 2, 4]
