"""The monitor inside Lightning, the Hugging Face Trainer, AMP, gradient accumulation and
torch.compile — with the real libraries (the ``integrations`` extra)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from wd_claims.monitor import Monitor
from wd_claims.monitor_records import series
from wd_claims.monitor_reference import digits

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def _tags(folder: Path) -> tuple[set[str], set[str], int]:
    """(scalar tags, histogram tags, event files) under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(folder.rglob("events.out.tfevents.*"))
    scalars, hists = set(), set()
    for f in files:
        ea = EventAccumulator(str(f))
        ea.Reload()
        scalars |= set(ea.Tags()["scalars"])
        hists |= set(ea.Tags()["histograms"])
    return scalars, hists, len(files)


def _sgd_identity(rec, t):
    """Plain SGD with coupled decay, no momentum: ‖w_{t+1} − w_t‖² = η²‖g_t + wd·w_t‖² exactly,
    so the recorded gradient is this step's (not the last step's, not a scaled one)."""
    g = rec.gram[:, t.rows].sum(1)
    step_sq = g[:, 0] - 2 * g[:, 1] + g[:, 2]
    lr, wd = rec.hyper[:, t.group, 0], rec.hyper[:, t.group, 1]
    return step_sq, lr**2 * (g[:, 3] + 2 * wd * g[:, 4] + wd**2 * g[:, 0])


class LitCNN(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = _cnn()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + 0.1 * s))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_the_lightning_callback_records_each_optimizer_step_logs_scalars_and_writes_the_report(
        tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from wd_claims.integrations.lightning import MonitorCallback

    torch.manual_seed(0)
    x, y = digits()
    loader = DataLoader(TensorDataset(x.view(-1, 1, 8, 8), y), batch_size=32, shuffle=True)
    callback = MonitorCallback(input_shape=(1, 8, 8), log_every=5, criterion={"window": 8})
    trainer = pl.Trainer(max_steps=20, accumulate_grad_batches=2, accelerator="cpu", devices=1,
                         logger=TensorBoardLogger(tmp_path), callbacks=[callback],
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    module = LitCNN()
    trainer.fit(module, loader)
    rec = callback.monitor.records()
    assert [t.name for t in rec.tracked] == ["net.0.weight"]
    assert rec.steps.tolist() == list(range(20))      # one record per optimizer step (2 batches)
    assert np.allclose(rec.hyper[:, 0, 0], [0.1 / (1 + 0.1 * s) for s in range(20)])
    step_sq, expected = _sgd_identity(rec, rec.tracked[0])
    np.testing.assert_allclose(step_sq, expected, rtol=1e-4)   # this step's gradient
    scalars, hists, files = _tags(tmp_path)
    assert {"wd_claims/net.0.weight/theta", "wd_claims/net.0.weight/eff_lr",
            "wd_claims/net.0.weight/norm"} <= scalars and not hists and files == 1
    assert Path(callback.paths["markdown"]).exists()
    opt = trainer.optimizers[0]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks   # closed


def test_a_callback_that_reattaches_never_doubles_the_hooks():
    from wd_claims.integrations.lightning import MonitorCallback

    model = LitCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    class FakeTrainer:       # the two attributes on_fit_start reads
        optimizers, global_step = [opt], 0

    callback = MonitorCallback(input_shape=(1, 8, 8))
    callback.on_fit_start(FakeTrainer, model)
    first = callback.monitor
    callback.on_fit_start(FakeTrainer, model)
    assert callback.monitor is first and len(opt._optimizer_step_pre_hooks) == 1
    with pytest.raises(RuntimeError, match="already attached"):
        Monitor(model, opt, input_shape=(1, 8, 8))
    first.close()
    first.close()                                     # idempotent
    assert not opt._optimizer_step_pre_hooks
    Monitor(model, opt, input_shape=(1, 8, 8)).close()   # attachable again once closed


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 12)
        self.lin = nn.Linear(12, 12, bias=False)
        self.norm = nn.LayerNorm(12, elementwise_affine=False)
        self.head = nn.Linear(12, 16)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.norm(self.lin(self.emb(input_ids))))
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return {"loss": loss, "logits": logits}


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=512):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 16, (n, 8), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": (self.x[i] * 3 + 1) % 16}


def test_the_hf_trainer_callback_follows_accumulation_and_the_schedule_and_logs_to_tensorboard(
        tmp_path, monkeypatch):
    from transformers import Trainer, TrainingArguments

    from wd_claims.integrations.huggingface import MonitorTrainerCallback

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    torch.manual_seed(0)
    model = TokenModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-2)
    callback = MonitorTrainerCallback(tensors=["lin.weight"], criterion={"window": 8})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8,
                             gradient_accumulation_steps=2, logging_steps=4,
                             report_to=["tensorboard"], save_strategy="no", use_cpu=True,
                             disable_tqdm=True, max_grad_norm=1e9)
    Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[callback],
            optimizers=(opt, None)).train()
    rec = callback.monitor.records()
    assert rec.steps.tolist() == list(range(12))      # one record per update step
    lrs = rec.hyper[:, 0, 0]
    assert lrs[0] > lrs[-1] > 0                       # the Trainer's linear decay, followed
    step_sq, expected = _sgd_identity(rec, rec.tracked[0])
    np.testing.assert_allclose(step_sq, expected, rtol=1e-4)
    scalars, hists, _ = _tags(tmp_path / "tb")
    assert {"wd_claims/lin.weight/theta", "wd_claims/lin.weight/theta_pred"} <= scalars
    assert not hists and (tmp_path / "monitor" / "monitor.md").exists()
    assert not opt._optimizer_step_pre_hooks


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_amps_grad_scaler_skips_is_recorded_as_skipped_and_gradients_are_unscaled(fused):
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    mon = Monitor(model, opt, tensors=["0.weight"])
    x, y = digits()
    direct = []
    for i in range(6):
        idx = torch.arange(32 * i, 32 * i + 32)
        opt.zero_grad(set_to_none=True)
        scaler.scale(F.cross_entropy(model(x[idx].view(-1, 1, 8, 8)), y[idx])).backward()
        direct.append(float(model[0].weight.grad.norm()) / scaler.get_scale())
        if i == 3:
            model[-1].bias.grad[0] = float("inf")          # an overflow: the scaler skips
        before = model[0].weight.detach().clone()
        scaler.step(opt)
        scaler.update()
        mon.sync(i + 1)      # the loop's step count: records what the scaler did not run
        if i == 3:
            assert torch.equal(before, model[0].weight)
    rec = mon.records()
    s = series(rec, rec.tracked[0])
    assert rec.steps.tolist() == list(range(6))
    assert rec.skipped.tolist() == [False, False, False, True, False, False]
    assert np.isnan(s["theta"][3]) and (s["theta"][[0, 1, 2, 4, 5]] > 0).all()
    kept = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(s["grad_norm"][kept], np.array(direct)[kept], rtol=1e-5)


def test_a_compiled_model_is_tracked_under_its_own_parameter_names():
    torch.manual_seed(0)
    model = _cnn()
    compiled = torch.compile(model, backend="eager")
    opt = torch.optim.SGD(compiled.parameters(), lr=0.1, weight_decay=1e-2)
    mon = Monitor(compiled, opt, input_shape=(1, 8, 8))
    assert [t.name for t in mon.tracked] == ["0.weight"]
    x, y = digits()
    for _i in range(3):
        opt.zero_grad()
        F.cross_entropy(compiled(x[:32].view(-1, 1, 8, 8)), y[:32]).backward()
        opt.step()
    assert len(mon.records().steps) == 3 and math.isfinite(series(mon.records(),
                                                                   mon.tracked[0])["theta"][-1])


@pytest.mark.parametrize("script,args,tables", [
    ("examples/monitor_lightning.py", ["--steps", "120"], 1),
    ("examples/monitor_hf_trainer.py", ["--steps", "40"], 1)])
def test_the_trainer_examples_run_as_typed(script, args, tables, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, script, *args, "--out", str(tmp_path)], cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("| tensor | rule |") == tables
    assert list(tmp_path.rglob("monitor.md")) and list(tmp_path.rglob("events.out.tfevents.*"))


def test_a_captured_step_the_scaler_then_skips_leaves_one_skipped_record_not_two():
    """Lightning + non-fused AMP: the gradients are captured, then the scaler skips step()."""
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-2)
    mon = Monitor(model, opt, tensors=["0.weight"], capture="external")
    x, y = digits()
    for i in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x[:32].view(-1, 1, 8, 8)), y[:32]).backward()
        mon.sync(i)
        mon.capture()
        if i != 1:                      # step 1: the scaler found an inf and skipped step()
            opt.step()
    mon.sync(3)
    rec = mon.records()
    assert rec.steps.tolist() == [0, 1, 2] and rec.skipped.tolist() == [False, True, False]
    assert rec.hyper.shape[0] == 3


def test_a_resumed_lightning_run_does_not_count_the_restored_steps_as_skipped():
    from wd_claims.integrations.lightning import MonitorCallback

    model = LitCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-2)

    class Resumed:
        optimizers, global_step, loggers, log_every_n_steps = [opt], 5000, [], 50

    callback = MonitorCallback(input_shape=(1, 8, 8))
    callback.on_fit_start(Resumed, model)
    x, y = digits()
    opt.zero_grad()
    F.cross_entropy(model(x[:32].view(-1, 1, 8, 8)), y[:32]).backward()
    callback.on_before_optimizer_step(Resumed, model, opt)
    opt.step()
    Resumed.global_step = 5001
    callback.on_train_batch_end(Resumed, model, None, None, 0)
    rec = callback.monitor.records()
    assert rec.steps.tolist() == [0] and not rec.skipped.any()
    callback.monitor.close()
