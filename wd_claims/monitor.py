"""Check your own training run: per-tensor rotational dynamics from the optimizer's step hooks.

One line in a user's loop::

    monitor = Monitor(model, optimizer, input_shape=(3, 32, 32))   # before training
    ...                                                            # the loop, unchanged
    print(monitor.summary()); monitor.report("reports/monitor")    # after it

The monitor finds the scale-invariant tensors with the suite's detector
(:func:`wd_claims.invariance.scale_invariant_names`), and around every ``every``-th
``optimizer.step()`` (PyTorch's ``register_step_pre_hook`` / ``register_step_post_hook``) records,
per tracked tensor (or per unit, ``units=True``: one output channel's slice), five inner products
in float64 — ⟨w_t, w_t⟩, ⟨w_t, w_{t+1}⟩, ⟨w_{t+1}, w_{t+1}⟩, ⟨g_t, g_t⟩, ⟨g_t, w_t⟩ — and each
parameter group's (η, weight_decay, μ/β₁) in force. Everything else is exact algebra on those on
the host (:func:`series`): ‖w‖², ‖g‖, cos(g, w), the angle θ_t between w_t and w_{t+1}, the radial
and tangential parts of the update, the effective learning rate, the prediction
(:mod:`wd_claims.optimizers`). Why float64 inner products and not float32 angles: arccos of a
float32 cosine resolves θ only to √(2·2⁻²³) ≈ 5e-4 rad, 5 % of a typical 1e-2 rad step.

The records stay on the device in a (chunk, rows, 5) buffer and reach the host once per chunk (one
synchronization per ``chunk`` recorded steps, none per step). The records and their algebra:
:mod:`wd_claims.monitor_records`; verdicts, report and figure: :mod:`wd_claims.monitor_report`.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import astuple

import numpy as np
import torch
from torch import nn

from wd_claims import optimizers
from wd_claims.invariance import NoScaleInvariantTensor, scale_invariant_names
from wd_claims.monitor_records import GRAM, HYPER, Records, Tracked
from wd_claims.monitor_report import judge_records, progress_line, summary_table, write_report


class Monitor:
    """Records the rotational dynamics of a model's scale-invariant tensors during training.

    Args:
        model, optimizer: the user's; only hooks are added (``close()`` removes them).
        input_shape: one example's shape, for the detector; or give ``tensors``.
        tensors: parameter names to track instead of the detected ones (a tensor that is not
            scale-invariant is then reported as such, from its measured radial gradient).
        every: record every k-th step. units: record per unit (output channel) as well.
        rule: override the detected rule (``wd_claims.optimizers.RULES``); ``"sgdw"`` needs
            ``decoupled_weight_decay`` (λ_w applied by the user's loop, not by torch's SGD).
        chunk: recorded steps kept on the device between copies to the host.
        progress: print a line every ``progress`` recorded steps (0: silent).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 input_shape: tuple[int, ...] | None = None, tensors: list[str] | None = None,
                 every: int = 1, units: bool = False, rule: str | None = None,
                 decoupled_weight_decay: float | None = None, chunk: int = 256,
                 progress: int = 0):
        if isinstance(optimizer, torch.optim.LBFGS):
            raise TypeError("LBFGS is closure-based: it evaluates several gradients per step, so "
                            "'the update of step t' has no single gradient; use a first-order "
                            "optimizer (SGD, AdamW, Lion)")
        if every < 1 or chunk < 1:
            raise ValueError(f"every = {every} and chunk = {chunk} must be ≥ 1")
        if rule is not None and rule not in optimizers.RULES:
            raise ValueError(f"rule {rule!r}: choose one of {optimizers.RULES}")
        if rule == "sgdw" and decoupled_weight_decay is None:
            raise ValueError("rule='sgdw' needs decoupled_weight_decay=λ_w (torch's SGD applies no "
                             "decoupled decay; the monitor cannot see the loop's own)")
        self.model, self.optimizer, self.every, self.units = model, optimizer, every, units
        self.chunk, self.progress = chunk, progress
        self._progress_lines = 0   # progress lines printed: one per ``progress`` recorded steps
        self.decoupled_weight_decay = decoupled_weight_decay
        names = self._names(model, input_shape, tensors)
        params = dict(model.named_parameters())
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self.tracked, self._params, rows = [], [], 0
        for name in names:
            p = params[name]
            if id(p) not in group_of:
                raise ValueError(f"{name} is not in any of the optimizer's parameter groups")
            g = group_of[id(p)]
            found, note = optimizers.rule_of(optimizer, optimizer.param_groups[g])
            chosen = rule or found
            n = p.shape[0] if units and p.dim() > 1 else 1
            self.tracked.append(Tracked(name, tuple(p.shape), g, chosen,
                                        note if rule is None else f"rule {rule!r} given",
                                        slice(rows, rows + n)))
            self._params.append(p)
            rows += n
        missing = sorted({t.rule_note for t in self.tracked if t.rule is None})
        for why in missing:
            warnings.warn(f"wd_claims.monitor records but cannot judge: {why}", stacklevel=2)
        device = self._params[0].device
        self._buf = torch.zeros((chunk, rows, len(GRAM)), dtype=torch.float64, device=device)
        self._slot, self._step, self._before_w = 0, 0, None
        self._host: list[np.ndarray] = []
        self._steps: list[int] = []
        self._hyper: list[list[list[float]]] = []
        self._missing: dict[str, int] = {}
        self._hooks = [optimizer.register_step_pre_hook(self._pre),
                       optimizer.register_step_post_hook(self._post)]

    @staticmethod
    def _names(model, input_shape, tensors) -> list[str]:
        if tensors is not None:
            known = dict(model.named_parameters())
            unknown = [n for n in tensors if n not in known]
            if unknown:
                raise KeyError(f"not parameters of the model: {unknown}")
            return list(tensors)
        if input_shape is None:
            raise ValueError("give input_shape=(C, H, W) (one example's shape) so the detector can "
                             "probe the model, or tensors=[names] to track")
        probe = copy.deepcopy(model).cpu()
        names = [n for n in scale_invariant_names(probe, tuple(input_shape))
                 if dict(model.named_parameters())[n].requires_grad]
        if not names:
            raise NoScaleInvariantTensor(
                f"{type(model).__name__} has no trainable scale-invariant tensor (no "
                "normalization absorbs any weight's scale): the theory has nothing to predict; "
                "pass tensors=[names] to record chosen tensors anyway")
        return names

    # --- the hooks --------------------------------------------------------------------------

    def _rows(self, t: torch.Tensor, i: int) -> torch.Tensor:
        n = self.tracked[i].rows.stop - self.tracked[i].rows.start
        return t.detach().to(torch.float64).reshape(n, -1)

    def _pre(self, optimizer, args, kwargs):
        # step's positional arguments (torch passes the optimizer itself first): a closure?
        if [a for a in args if a is not optimizer] or (kwargs or {}).get("closure") is not None:
            raise RuntimeError("optimizer.step(closure): closure-based steps re-evaluate the "
                               "gradient inside the step; the monitor needs step() without one")
        self._before_w = None
        if self._step % self.every:
            return
        before = []
        for i, p in enumerate(self._params):
            w = self._rows(p, i)
            if p.grad is None:
                self._missing[self.tracked[i].name] = self._missing.get(self.tracked[i].name,
                                                                         0) + 1
                g = torch.full_like(w, float("nan"))
            elif p.grad.is_sparse:
                raise TypeError(f"{self.tracked[i].name} has a sparse gradient: a sparse "
                                "(embedding-style) tensor is not scale-invariant; leave it out "
                                "with tensors=[...]")
            else:
                g = self._rows(p.grad, i)
            before.append((w, (g * g).sum(1), (g * w).sum(1)))
        self._before_w = before
        self._hyper.append([list(astuple(optimizers.hyper_of(grp, optimizer)))
                            for grp in optimizer.param_groups])

    @torch.no_grad()
    def _post(self, optimizer, args, kwargs):
        step, self._step = self._step, self._step + 1
        if self._before_w is None:
            return
        for i, (p, (w, gg, gw)) in enumerate(zip(self._params, self._before_w, strict=True)):
            v = self._rows(p, i)
            self._buf[self._slot, self.tracked[i].rows] = torch.stack(
                ((w * w).sum(1), (w * v).sum(1), (v * v).sum(1), gg, gw), dim=1)
        self._before_w = None
        self._steps.append(step)
        self._slot += 1
        if self._slot == self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._slot:
            self._host.append(self._buf[: self._slot].cpu().numpy().copy())
            self._slot = 0
            # the records reach the host once per chunk: print if a multiple of ``progress``
            # was passed since the last line (at most one line per flush)
            if self.progress and len(self._steps) // self.progress > self._progress_lines:

                self._progress_lines = len(self._steps) // self.progress
                print(progress_line(self.records()), flush=True)

    # --- results ----------------------------------------------------------------------------

    def records(self) -> Records:
        """Everything recorded so far, on the host (copies the device buffer's partial chunk)."""
        parts = list(self._host)
        if self._slot:
            parts.append(self._buf[: self._slot].cpu().numpy().copy())
        rows = self._buf.shape[1]
        gram = np.concatenate(parts) if parts else np.zeros((0, rows, len(GRAM)))
        groups = len(self.optimizer.param_groups)
        return Records(self.tracked, np.array(self._steps, dtype=np.int64), gram,
                       np.array(self._hyper, dtype=float).reshape(len(self._steps), groups,
                                                                  len(HYPER)),
                       type(self.optimizer).__name__, self.every, self.units,
                       self.decoupled_weight_decay, dict(self._missing))

    def verdicts(self, **criterion):
        """Per-tensor verdicts (:func:`wd_claims.monitor_report.judge_records`)."""
        return judge_records(self.records(), **criterion)

    def summary(self, **criterion) -> str:
        """The verdict table, for a terminal."""
        return summary_table(self.verdicts(**criterion))

    def report(self, directory, title: str = "Training-run monitor", **criterion) -> dict:
        """Writes monitor.md, monitor.json and monitor.png into ``directory``; returns the paths."""
        return write_report(self.records(), directory, title=title, **criterion)

    def close(self) -> None:
        """Removes the hooks (the records stay)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
