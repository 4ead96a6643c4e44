"""The monitor in the Hugging Face Trainer: a small GPT-style model with QK-norm, character level.

    python examples/monitor_hf_trainer.py [--steps N] [--out reports/monitor_hf]

Two pre-LN blocks of width 64 (``wd_claims.models.gpt``) with QK-norm — a LayerNorm without affine
over each head's query and key, so the query and key projections' kernels are scale-invariant —
trained as a next-character model on this package's own source text (real text that ships with
it), with the Trainer's AdamW, linear warm-up + cosine decay and weight decay 0.1 (the Trainer
decays every weight but biases and LayerNorms). The scale-invariant tensors are found by the suite's
detector on the block stack; the only added lines are the detection and the callback,
``MonitorTrainerCallback(tensors=names)``. It logs each tracked tensor's angle, prediction,
effective learning rate and norm to TensorBoard (``<out>/runs``) and writes the report at the end
of training. About a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout, as typed

from transformers import Trainer, TrainingArguments  # noqa: E402
from wd_claims.models.gpt import Block  # noqa: E402

from wd_claims.integrations.huggingface import MonitorTrainerCallback  # noqa: E402
from wd_claims.invariance import scale_invariant_names  # noqa: E402

CONTEXT, WIDTH = 32, 64


class CharGPT(nn.Module):
    """Token + position embeddings → pre-LN blocks with QK-norm → LayerNorm → logits per position;
    ``forward(input_ids, labels)`` returns the Trainer's {"loss", "logits"}."""

    def __init__(self, vocab: int, width: int = WIDTH, heads: int = 4, layers: int = 2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(CONTEXT, width)
        self.blocks = nn.Sequential(*(Block(width, heads, qk_norm=True) for _ in range(layers)))
        self.ln_f, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

    def forward(self, input_ids, labels=None):
        h = self.tok(input_ids) + self.pos.weight[: input_ids.shape[1]]
        logits = self.head(self.ln_f(self.blocks(h)))
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return {"loss": loss, "logits": logits}


class Chars(torch.utils.data.Dataset):
    """Windows of CONTEXT + 1 characters of the package's source, as input and shifted labels."""

    def __init__(self, text: str, samples: int = 20_000, seed: int = 0):
        self.vocab = sorted(set(text))
        ids = torch.tensor([self.vocab.index(c) for c in text])
        starts = torch.randint(0, len(ids) - CONTEXT - 1, (samples,),
                               generator=torch.Generator().manual_seed(seed))
        self.windows = torch.stack([ids[s: s + CONTEXT + 1] for s in starts.tolist()])

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        w = self.windows[i]
        return {"input_ids": w[:-1], "labels": w[1:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("reports/monitor_hf"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "wd_claims").glob("*.py")))
    data = Chars(text)
    model = CharGPT(len(data.vocab))
    names = ["blocks." + n for n in scale_invariant_names(model.blocks, (CONTEXT, WIDTH))]
    callback = MonitorTrainerCallback(tensors=names, criterion={"window": 1024})
    training = TrainingArguments(
        output_dir=str(args.out), max_steps=args.steps, per_device_train_batch_size=32,
        learning_rate=3e-3, weight_decay=0.1, lr_scheduler_type="cosine", warmup_steps=50,
        logging_steps=50, report_to=["tensorboard"],
        save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, dataloader_num_workers=0)
    Trainer(model=model, args=training, train_dataset=data, callbacks=[callback]).train()
    print(callback.monitor.summary(window=1024))
    print(f"report: {callback.paths['markdown']}; TensorBoard: {args.out / 'runs'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
