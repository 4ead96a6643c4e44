"""The monitor on many processes (gloo, 2 CPU processes): DDP's replicated parameters and FSDP2's
sharded DTensors record the same values as one process on the same global batch; the detector runs
once; rank 0 writes the one report; a failing process group is said, not hidden."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from wd_claims.monitor import Monitor, all_reduce

STEPS, GLOBAL_BATCH, WORLD = 12, 64, 2


def _net():
    """Linear → LayerNorm (no affine) → ReLU → Linear: the first weight is scale-invariant, and a
    per-example normalization makes the data-parallel gradient equal the one-process gradient
    (BatchNorm's statistics would be per rank)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24, bias=False), nn.LayerNorm(24, elementwise_affine=False),
                         nn.ReLU(), nn.Linear(24, 4))


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(GLOBAL_BATCH, 16, generator=g), torch.randint(0, 4, (GLOBAL_BATCH,),
                                                                        generator=g))
            for _ in range(STEPS)]


def _train(model, opt, rank=0, world=1):
    share = GLOBAL_BATCH // world
    for x, y in _batches():
        opt.zero_grad(set_to_none=True)
        part = slice(rank * share, (rank + 1) * share)
        F.cross_entropy(model(x[part]), y[part]).backward()
        opt.step()


def _single() -> np.ndarray:
    model = _net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    mon = Monitor(model, opt, tensors=["0.weight"])
    _train(model, opt)
    return mon.records().gram


def _worker(rank: int, port: int, kind: str, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        model = _net()
        if kind == "ddp":
            model = nn.parallel.DistributedDataParallel(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
            mon = Monitor(model, opt, input_shape=(16,))        # the detector, on rank 0 only
        else:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh("cpu", (WORLD,))
            for layer in (model[0], model[3]):
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
            mon = Monitor(model, opt, tensors=["0.weight"])
        _train(model, opt, rank, WORLD)
        paths = mon.report(Path(out) / "report")
        np.save(Path(out) / f"{kind}-{rank}.npy", mon.records().gram)
        (Path(out) / f"{kind}-{rank}.txt").write_text(
            f"{[t.name for t in mon.tracked]}|{bool(paths)}")
    finally:
        dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
def test_a_data_parallel_run_records_what_one_process_records_on_the_same_global_batch(
        kind, tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(_port(), kind, str(tmp_path)), nprocs=WORLD, join=True)
    single = _single()
    for rank in range(WORLD):
        gram = np.load(tmp_path / f"{kind}-{rank}.npy")
        # ⟨w, w⟩, ⟨w, w'⟩, ⟨w', w'⟩, ⟨g, g⟩ to float32 reduction order; ⟨g, w⟩ is zero up to
        # rounding (w is scale-invariant), so it is compared as a cosine, absolutely
        assert_close(torch.tensor(gram[..., :4]), torch.tensor(single[..., :4]), rtol=1e-5,
                     atol=0)
        scale = np.sqrt(single[..., 3] * single[..., 0])
        assert np.max(np.abs(gram[..., 4] - single[..., 4]) / scale) < 1e-6
        print(f"\n{kind} rank {rank}: max relative difference to one process "
              f"{np.max(np.abs(gram[..., :4] / single[..., :4] - 1)):.1e} (⟨w,w⟩, ⟨w,w'⟩, "
              f"⟨w',w'⟩, ⟨g,g⟩), {np.max(np.abs(gram[..., 4] - single[..., 4]) / scale):.1e} "
              "(cos(g, w))")
    names = [(tmp_path / f"{kind}-{r}.txt").read_text().split("|") for r in range(WORLD)]
    assert names[0][0] == names[1][0] == "['0.weight']"
    assert names[0][1] == "True" and names[1][1] == "False"     # rank 0 wrote the one report
    assert (tmp_path / "report" / "monitor.md").exists()


def _failing_group(rank: int, port: int, out: str):
    """Rank 1 leaves the group at once; rank 0's all-reduce then fails (peer gone, or the 5 s
    timeout)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=5))
    if rank == 1:
        os._exit(0)
    try:
        all_reduce(torch.zeros(3, dtype=torch.float64), dist.group.WORLD)
    except RuntimeError as err:
        Path(out).write_text(str(err))
    os._exit(0)


def test_a_failing_process_group_gets_a_clear_error(tmp_path):
    out = tmp_path / "error.txt"
    mp.start_processes(_failing_group, args=(_port(), str(out)), nprocs=WORLD, join=True,
                       start_method="spawn")
    assert "summing the shards' inner products over the process group failed" in out.read_text()
