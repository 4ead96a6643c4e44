"""The monitor in PyTorch Lightning: a small CNN on scikit-learn's handwritten digits.

    python examples/monitor_lightning.py [--steps N] [--out reports/monitor_lightning]

Two convolutions, each followed by BatchNorm (their kernels are scale-invariant), a linear head;
SGD + momentum 0.9 with coupled weight decay under a linear warm-up + cosine schedule (Lightning's
``configure_optimizers``, stepped every optimizer step). The only added line is the callback,
``MonitorCallback(input_shape=(1, 8, 8))``: it logs each kernel's angle, prediction, effective
learning rate and norm to TensorBoard (``<out>/lightning_logs``) and writes the verdict report at
the end of fit. About a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout, as typed

from wd_claims.integrations.lightning import MonitorCallback  # noqa: E402
from wd_claims.monitor_reference import digits  # noqa: E402


class DigitsCNN(pl.LightningModule):
    def __init__(self, steps: int, lr: float = 0.1, weight_decay: float = 5e-3):
        super().__init__()
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9,
                              weight_decay=self.weight_decay)
        warmup = self.steps // 20

        def multiplier(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (self.steps - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("reports/monitor_lightning"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    x, y = digits()
    data = TensorDataset(x.view(-1, 1, 8, 8), y)
    loader = DataLoader(data, batch_size=64, shuffle=True, drop_last=True)
    callback = MonitorCallback(input_shape=(1, 8, 8), report_dir=args.out / "monitor",
                               criterion={"window": 1024})
    trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", devices=1,
                         default_root_dir=args.out, callbacks=[callback], log_every_n_steps=50,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(DigitsCNN(args.steps), loader)
    print(callback.monitor.summary(window=1024))
    print(f"report: {callback.paths['markdown']}; TensorBoard: {trainer.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
