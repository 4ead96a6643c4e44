"""A run as plain arrays for the disk cache (:mod:`wd_claims.cache`), and the key's fields.

:func:`cache_fields` is everything a run's numbers depend on (configuration, data, device, library
versions, the engine's code without its docstrings, the model factory's identity);
:func:`result_arrays` / :func:`result_from_arrays` convert a :class:`TrainResult` to and from
``.npz``-able arrays, refusing an entry of the wrong shape.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from wd_claims.data import DeviceData
from wd_claims.run_config import (
    JOINT_LABELS,
    METRICS_KT,
    METRICS_KTP,
    TrainConfig,
    TrainResult,
    build_model,
)
from wd_claims.zoo import factory_identity

# In wd_claims/. The zoo is not among them: a run's model enters its key through the identity of
# its factory (module, qualified name, source hash; cache_fields), so registering or describing a
# model does not invalidate every cached run, and a user's model never shares a zoo model's entry.
CODE_FILES = ("train.py", "fused.py", "run_config.py", "run_parts.py", "replicas.py",
              "metrics.py", "storage.py", "data.py", "datasets.py", "invariance.py", "config.py")


def code_version() -> str:
    """sha256 of the source that determines a run's numbers: this engine, the data pipeline, the
    invariance detector, the budgets' conversion, and every file of ``wd_claims.models``."""
    from wd_claims import models

    package = Path(__file__).resolve().parent
    files = [package / f for f in CODE_FILES] + sorted(Path(models.__file__).parent.glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + _code_only(path.read_text()) + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _code_only(source: str) -> bytes:
    """The code of a module without its docstrings and comments (``ast.dump`` of the parse tree
    with every docstring removed): editing documentation must not invalidate cached runs.
    Memoized on the source text itself (an edited file is parsed again): parsing the engine's
    files took 0.1 s, and every cache lookup of a run reads them."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def cache_fields(config: TrainConfig, train_data: DeviceData, test_data: DeviceData | None,
                 device) -> dict:
    """Everything a run's numbers depend on: the full configuration, the data, the device kind,
    the precision, the library version and the code."""
    return {"config": config.asdict(), "train_data": [train_data.name, len(train_data)],
            "test_data": None if test_data is None else [test_data.name, len(test_data)],
            "device": torch.device(device).type, "dtype": config.dtype,
            "torch": torch.__version__, "numpy": np.__version__, "code": code_version(),
            "factory": factory_identity(config.model_spec.factory)}


def result_arrays(result: TrainResult) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta): a result as plain numeric arrays (for .npz) and JSON-able metadata."""
    arrays = {f"metrics/{m}": a for m, a in result.metrics.items()}
    for label in ("test", "train_eval"):
        arrays.update({f"{label}/{m}": a for m, a in getattr(result, label).items()})
    for step, states in result.checkpoints.items():
        for k, state in enumerate(states):
            arrays.update({f"checkpoints/{step}/{k}/{n}": a for n, a in state.items()})
    meta = {"tensors": result.tensors, "diverged": result.diverged, "seconds": result.seconds,
            "augmented": result.augmented, "flipped": result.flipped,
            "evaluated": sorted(label for label in ("test", "train_eval")
                                if getattr(result, label))}
    return arrays, meta


def result_from_arrays(config: TrainConfig, has_test: bool, arrays: dict[str, np.ndarray],
                       meta: dict) -> TrainResult:
    """Inverse of :func:`result_arrays`; KeyError/ValueError when anything is missing or has the
    wrong shape (then the cache entry is not trusted)."""
    tensors, k, t = list(meta["tensors"]), config.k, config.steps
    if not tensors or tensors[-1] not in JOINT_LABELS or len(meta["diverged"]) != k:
        raise ValueError("tracked tensors or divergence record malformed")
    expect = {f"metrics/{m}": (k, t, len(tensors)) for m in METRICS_KTP}
    expect.update({f"metrics/{m}": (k, t) for m in METRICS_KT})
    labels = [lb for lb, wanted in (("train_eval", True), ("test", has_test)) if wanted]
    if config.evaluate:
        expect.update({f"{lb}/{m}": (k,) for lb in labels for m in ("loss", "accuracy")})
    template = {n: tuple(a.shape) for n, a in build_model(config).state_dict().items()}
    for step in config.checkpoint_steps():
        for j in range(k):
            expect.update({f"checkpoints/{step}/{j}/{n}": s for n, s in template.items()})
    for key, shape in expect.items():
        if key not in arrays:
            raise KeyError(f"missing array {key}")
        if arrays[key].shape != shape:
            raise ValueError(f"{key} has shape {arrays[key].shape}, expected {shape}")
    result = TrainResult(config, tensors,
                         {m: arrays[f"metrics/{m}"] for m in METRICS_KTP + METRICS_KT},
                         list(meta["diverged"]), from_cache=True,
                         augmented=float(meta["augmented"]),
                         flipped=float(meta.get("flipped", "nan")))
    result.checkpoints = {s: [{n: arrays[f"checkpoints/{s}/{j}/{n}"] for n in template}
                              for j in range(k)] for s in config.checkpoint_steps()}
    if config.evaluate:
        for lb in labels:
            setattr(result, lb, {m: arrays[f"{lb}/{m}"] for m in ("loss", "accuracy")})
    return result
