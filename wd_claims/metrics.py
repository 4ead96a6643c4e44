"""The per-step float64 metrics of K configurations, and the recorder that gathers them.

:func:`step_metrics` turns (w_t, g_t, w_{t+1}) into the METRICS_KTP of :mod:`wd_claims.train`'s
docstring; :class:`Recorder` keeps them in device buffers of CHUNK steps and copies them to the
host once per chunk, and tracks which configurations are alive (finite).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wd_claims.run_config import CHUNK, METRICS_KT, METRICS_KTP, TrainConfig


@dataclass(frozen=True)
class Segments:
    """Where each tracked tensor lies in the concatenation of the tracked tensors (n entries)."""

    matrix: torch.Tensor   # (n, P) float64 0/1: column p selects tracked tensor p, the last
                           # column every 3x3 kernel (ALL_3X3)
    index: torch.Tensor    # (n,) int64: the tracked tensor (column < P − 1) of every entry
    empty: torch.Tensor    # (P,) bool: columns that select nothing (ALL_3X3 of an MLP)

    @classmethod
    def build(cls, sizes: list[int], in_3x3: list[bool], device) -> Segments:
        n = sum(sizes)
        index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes).long())
        matrix = torch.zeros(n, len(sizes) + 1, dtype=torch.float64)
        matrix[torch.arange(n), index] = 1
        matrix[:, -1] = torch.tensor(in_3x3, dtype=torch.bool)[index].double()
        return cls(matrix.to(device), index.to(device), (matrix.sum(0) == 0).to(device))


# --- the metrics -----------------------------------------------------------------------------

def step_metrics(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, segments: Segments,
                 eta: torch.Tensor, lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """The METRICS_KTP of one SGD step for K configurations.

    w, g, v: (K, n) float64, the tracked tensors concatenated: w_t, g_t (the loss gradient without
    the decay term) and w_{t+1}; eta, lam: (K,). Returns {name: (K, P)}. Every quantity is a sum
    over a tensor's entries, a matrix product with ``segments.matrix``, so the per-tensor columns
    and ALL_3X3 come out of the same products.
    """
    ww, gg, gw, vv, vw = torch.stack([w * w, g * g, g * w, v * v, v * w]) @ segments.matrix
    wn, gn, vn = ww.sqrt(), gg.sqrt(), vv.sqrt()
    exact = (eta / (1 - 2 * eta * lam))[:, None]           # η/(1 − 2ηλ): exact first-order factor
    coefs = torch.stack([exact, eta[:, None]])             # (2, K, 1): exact, the article's
    index = segments.index
    per_tensor = _residual_sqnorms(w, g, v, wn[:, index], vn[:, index], coefs,
                                   segments.matrix[:, :-1])
    joint = _residual_sqnorms(w, g, v, wn[:, -1:], vn[:, -1:], coefs, segments.matrix[:, -1:])
    resid = torch.cat([per_tensor, joint], 2).sqrt()      # (2, K, P)
    out = {"sqnorm": ww, "gnorm": gn, "cos_gw": gw / (gn * wn), "cos_step": vw / (vn * wn),
           "du_pred": exact * gn / wn, "du_resid": resid[0], "du_resid_article": resid[1]}
    return {name: value.masked_fill(segments.empty, torch.nan) for name, value in out.items()}


def _residual_sqnorms(w, g, v, w_norm, v_norm, coefs, matrix):
    """(C, K, S): ‖(v/‖v‖ − w/‖w‖) + c·g/‖w‖‖² per segment (the S columns of ``matrix``), for
    the C coefficients c (coefs: (C, K, 1)). w_norm, v_norm: (K, n) or (K, 1), the norms of the
    tensor each entry belongs to. Computed entry by entry, not by expanding the square: the
    residual is second order in η_e and the expansion would cancel it away."""
    du = v / v_norm - w / w_norm
    return (du + coefs * (g / w_norm)).square() @ matrix


class Recorder:
    """The metrics of a run, gathered in device buffers of CHUNK steps and copied to host numpy
    arrays once per chunk (no host synchronisation per step); tracks which configurations live."""

    def __init__(self, config: TrainConfig, p: int, device):
        self.config, self.device = config, device
        k, t = config.k, config.steps
        self.metrics = {m: np.full((k, t, p), np.nan) for m in METRICS_KTP}
        self.metrics.update({m: np.full((k, t), np.nan) for m in METRICS_KT})
        f64 = dict(dtype=torch.float64, device=device)
        self.chunk = {m: torch.full((k, CHUNK, p), torch.nan, **f64) for m in METRICS_KTP}
        self.chunk.update({m: torch.full((k, CHUNK), torch.nan, **f64) for m in METRICS_KT})
        self.now = {m: torch.full((k,), torch.nan, **f64) for m in METRICS_KT}
        self.alive = torch.ones(k, dtype=torch.bool, device=device)
        self.died_at = torch.full((k,), -1, dtype=torch.long, device=device)
        self.died_loss = torch.zeros(k, **f64)
        self.flushed = False
        self._last_loss = np.full(k, np.nan)

    def config_step(self, k: int, t: int, loss, accuracy, finite) -> None:
        """Configuration k at step t: its mini-batch loss and accuracy, and whether its loss and
        updated parameters are finite (0-d device tensors)."""
        newly_dead = self.alive[k] & ~finite
        self.died_at[k] = torch.where(newly_dead, t, self.died_at[k])
        self.died_loss[k] = torch.where(newly_dead, loss.double(), self.died_loss[k])
        self.alive[k] = self.alive[k] & finite
        self.now["loss"][k] = loss
        self.now["accuracy"][k] = accuracy

    def step(self, t: int, values: dict[str, torch.Tensor]) -> None:
        i = t % CHUNK
        for m in METRICS_KTP:
            self.chunk[m][:, i] = torch.where(self.alive[:, None], values[m], torch.nan)
        for m in METRICS_KT:
            self.chunk[m][:, i] = torch.where(self.alive, self.now[m], torch.nan)
        self.flushed = i == CHUNK - 1 or t == self.config.steps - 1
        if self.flushed:
            start = t - i
            for m, buf in self.chunk.items():
                self.metrics[m][:, start: t + 1] = buf[:, : i + 1].cpu().numpy()
            self._last_loss = self.metrics["loss"][:, t]

    def loss_now(self) -> np.ndarray:
        return self._last_loss

    def diverged_messages(self) -> list[str | None]:
        died_at, died_loss = self.died_at.tolist(), self.died_loss.tolist()
        out = []
        for k, (t, loss) in enumerate(zip(died_at, died_loss, strict=True)):
            if t < 0:
                out.append(None)
                continue
            what = (f"loss = {loss}" if not np.isfinite(loss)
                    else f"parameters non-finite after the update (loss = {loss:.4g})")
            out.append(f"config {k} (η={self.config.etas[k]:g}, λ={self.config.lams[k]:g}) "
                       f"diverged at step {t}: {what}")
        return out
