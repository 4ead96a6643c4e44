"""A small GPT-style decoder (pre-LayerNorm blocks, causal self-attention, GELU MLP), with or
without QK-norm (a LayerNorm over each head's query and key, no affine: the query and key
projections' kernels become scale-invariant). Input: token embeddings (B, T, width), float."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads, self.qk_norm = heads, qk_norm
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v = (nn.Linear(width, width, bias=False) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))
        head = width // heads
        self.q_norm = nn.LayerNorm(head, elementwise_affine=False) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head, elementwise_affine=False) if qk_norm else nn.Identity()

    def forward(self, x):
        b, t, c = x.shape
        a = self.ln1(x)

        def split(z):
            return z.view(b, t, self.heads, c // self.heads).transpose(1, 2)

        q, k, v = self.q_norm(split(self.q(a))), self.k_norm(split(self.k(a))), split(self.v(a))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """``layers`` pre-LN blocks of ``width`` with ``heads`` heads, a final LayerNorm and a linear
    head to ``vocab`` logits, read at the last position."""

    def __init__(self, width: int = 64, heads: int = 4, layers: int = 2, vocab: int = 64,
                 qk_norm: bool = False):
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width, heads, qk_norm) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(self.blocks(x))[:, -1])


def gpt_block(qk_norm: bool = False) -> TinyGPT:
    return TinyGPT(qk_norm=qk_norm)
