"""Check your own training run: per-tensor rotational dynamics from the optimizer's step hooks.

One line in a user's loop::

    monitor = Monitor(model, optimizer, input_shape=(3, 32, 32))   # before training
    ...                                                            # the loop, unchanged
    print(monitor.summary()); monitor.report("reports/monitor")    # after it

The monitor finds the scale-invariant tensors with the suite's detector
(:func:`wd_claims.invariance.scale_invariant_names`), and around every ``every``-th
``optimizer.step()`` (PyTorch's ``register_step_pre_hook`` / ``register_step_post_hook``) records,
per tracked tensor (or per unit, ``units=True``: one output channel's slice), five inner products
— ⟨w_t, w_t⟩, ⟨w_t, w_{t+1}⟩, ⟨w_{t+1}, w_{t+1}⟩, ⟨g_t, g_t⟩, ⟨g_t, w_t⟩ — and each
parameter group's (η, weight_decay, μ/β₁) in force. Everything else is exact algebra on those on
the host (:func:`series`): ‖w‖², ‖g‖, cos(g, w), the angle θ_t between w_t and w_{t+1}, the radial
and tangential parts of the update, the effective learning rate, the prediction
(:mod:`wd_claims.optimizers`). Why inner products (cascade-summed, :func:`_dot`) with the angle
from float64 algebra on them, and not float32 angles: arccos of a float32 cosine resolves θ only
to √(2·2⁻²³) ≈ 5e-4 rad, 5 % of a typical 1e-2 rad step.

The records stay on the device in a (chunk, rows, 5) buffer and reach the host once per chunk (one
synchronization per ``chunk`` recorded steps, none per step). Inside trainers
(:mod:`wd_claims.integrations`): ``capture="external"`` lets the trainer's own "gradients ready"
hook capture (w_t, g_t) when the step runs a closure (Lightning); :meth:`Monitor.sync` records the
steps AMP's ``GradScaler`` skipped without calling ``step()``; a fused optimizer's step, which
the scaler calls with the gradients still scaled, is unscaled by its ``grad_scale`` and, when it
``found_inf``, recorded as skipped (in ``capture="external"`` mode the capture runs before the
scaler's step, so a fused optimizer under AMP would be recorded with scaled gradients: not
supported there). Sharded parameters (FSDP2's DTensors): each rank's local
inner products are summed over the shard group (one all-reduce per recorded step), so every rank
records the global values; :meth:`Monitor.report` writes on rank 0 only. The records and their
algebra: :mod:`wd_claims.monitor_records`; verdicts, report and figure:
:mod:`wd_claims.monitor_report`.
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
        capture: ``"hook"`` (the optimizer's step pre-hook reads w_t and g_t) or ``"external"``
            (the caller calls :meth:`capture` once the gradients are ready; closures allowed).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 input_shape: tuple[int, ...] | None = None, tensors: list[str] | None = None,
                 every: int = 1, units: bool = False, rule: str | None = None,
                 decoupled_weight_decay: float | None = None, chunk: int = 256,
                 progress: int = 0, capture: str = "hook"):
        if isinstance(optimizer, torch.optim.LBFGS):
            raise TypeError("LBFGS is closure-based: it evaluates several gradients per step, so "
                            "'the update of step t' has no single gradient; use a first-order "
                            "optimizer (SGD, AdamW, Lion)")
        if every < 1 or chunk < 1:
            raise ValueError(f"every = {every} and chunk = {chunk} must be ≥ 1")
        if rule is not None and rule not in optimizers.RULES:
            raise ValueError(f"rule {rule!r}: choose one of {optimizers.RULES}")
        if capture not in ("hook", "external"):
            raise ValueError(f"capture = {capture!r}: 'hook' or 'external'")
        if getattr(optimizer, "_wd_claims_monitor", None) is not None:
            raise RuntimeError("a wd_claims Monitor is already attached to this optimizer: close() "
                               "it first (two would double every hook and every record)")
        if rule == "sgdw" and decoupled_weight_decay is None:
            raise ValueError("rule='sgdw' needs decoupled_weight_decay=λ_w (torch's SGD applies no "
                             "decoupled decay; the monitor cannot see the loop's own)")
        self.model, self.optimizer, self.every, self.units = model, optimizer, every, units
        self.chunk, self.progress, self.capture_mode = chunk, progress, capture
        model = unwrap(model)
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
            if units and is_sharded(p):
                raise NotImplementedError(f"{name} is sharded (a DTensor): units=True splits rows "
                                          "across ranks; record per tensor (units=False)")
            n = p.shape[0] if units and p.dim() > 1 else 1
            self.tracked.append(Tracked(name, tuple(p.shape), g, chosen,
                                        note if rule is None else f"rule {rule!r} given",
                                        slice(rows, rows + n)))
            self._params.append(p)
            rows += n
        missing = sorted({t.rule_note for t in self.tracked if t.rule is None})
        for why in missing:
            warnings.warn(f"wd_claims.monitor records but cannot judge: {why}", stacklevel=2)
        device = local(self._params[0]).device
        self._group = shard_group(self._params)
        replicated = [r for t, p in zip(self.tracked, self._params, strict=True)
                      if not is_sharded(p) for r in range(t.rows.start, t.rows.stop)]
        self._replicated = torch.tensor(replicated, dtype=torch.long, device=device) \
            if replicated and self._group is not None else None
        self._buf = torch.zeros((chunk, rows, len(GRAM)), dtype=torch.float64, device=device)
        self._skip = torch.zeros(chunk, dtype=torch.float64, device=device)
        self._slot, self._step, self._before_w = 0, 0, None
        self._host: list[np.ndarray] = []
        self._host_skip: list[np.ndarray] = []
        self._steps: list[int] = []
        self._hyper: list[list[list[float]]] = []
        self._missing: dict[str, int] = {}
        self._hooks = [optimizer.register_step_pre_hook(self._pre),
                       optimizer.register_step_post_hook(self._post)]
        optimizer._wd_claims_monitor = self

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
        if any(is_sharded(p) for p in model.parameters()):
            raise ValueError("the model's parameters are sharded (DTensors): run the detector on "
                             "the unsharded model first, names = wd_claims.invariance."
                             "scale_invariant_names(model, input_shape), and pass tensors=names")
        names = None
        if not distributed() or torch.distributed.get_rank() == 0:   # the detector runs once
            probe = copy.deepcopy(model).cpu()
            names = [n for n in scale_invariant_names(probe, tuple(input_shape))
                     if dict(model.named_parameters())[n].requires_grad]
        if distributed():
            box = [names]
            torch.distributed.broadcast_object_list(box, src=0)
            names = box[0]
        if not names:
            raise NoScaleInvariantTensor(
                f"{type(model).__name__} has no trainable scale-invariant tensor (no "
                "normalization absorbs any weight's scale): the theory has nothing to predict; "
                "pass tensors=[names] to record chosen tensors anyway")
        return names

    # --- the hooks --------------------------------------------------------------------------

    def _rows(self, t: torch.Tensor, i: int) -> torch.Tensor:
        """(rows, entries) view of a tracked tensor; 16-bit tensors in float32 for the products."""
        n = self.tracked[i].rows.stop - self.tracked[i].rows.start
        t = t.detach()
        return (t.float() if t.element_size() < 4 else t).reshape(n, -1)

    def _pre(self, optimizer, args, kwargs):
        # step's positional arguments (torch passes the optimizer itself first): a closure?
        # (accelerate passes closure=None positionally: None is no closure)
        closure = [a for a in args if a is not optimizer and a is not None] or \
            (kwargs or {}).get("closure")
        if self.capture_mode == "external":
            return
        if closure:
            raise RuntimeError("optimizer.step(closure): closure-based steps re-evaluate the "
                               "gradient inside the step; the monitor needs step() without one "
                               "(or capture='external' and a call to capture() once the "
                               "gradients are ready, as the Lightning callback does)")
        self.capture()

    @torch.no_grad()
    def capture(self) -> None:
        """Reads w_t and g_t (and the hyperparameters in force) for the coming step; the
        optimizer's post-hook completes the record. Called by the pre-hook, or by the caller in
        ``capture="external"`` mode once the gradients are ready."""
        optimizer = self.optimizer
        self._before_w = None
        if self._step % self.every:
            return
        scale = getattr(optimizer, "grad_scale", None)   # a fused step under GradScaler
        before = []
        for i, p in enumerate(self._params):
            w = self._rows(local(p), i).clone()
            if p.grad is None:
                self._missing[self.tracked[i].name] = self._missing.get(self.tracked[i].name,
                                                                         0) + 1
                g = torch.full_like(w, float("nan"))
            elif p.grad.is_sparse:
                raise TypeError(f"{self.tracked[i].name} has a sparse gradient: a sparse "
                                "(embedding-style) tensor is not scale-invariant; leave it out "
                                "with tensors=[...]")
            else:
                g = self._rows(local(p.grad), i)
                if scale is not None:
                    g = g / scale.to(g)
            before.append((w, _dot(g, g), _dot(g, w), _dot(w, w)))
        # the hyperparameters join the record in the post-hook: a capture whose step never runs
        # (AMP's scaler skipped it) leaves no row behind
        self._before_w = before, self._hyper_now()

    @torch.no_grad()
    def _post(self, optimizer, args, kwargs):
        step, self._step = self._step, self._step + 1
        if self._before_w is None:
            return
        before, hyper = self._before_w
        self._hyper.append(hyper)
        for i, (p, (w, gg, gw, ww)) in enumerate(zip(self._params, before, strict=True)):
            d = self._rows(local(p), i) - w       # the update, exact to rounding (Sterbenz)
            wd, dd = _dot(w, d), _dot(d, d)
            self._buf[self._slot, self.tracked[i].rows] = torch.stack(
                (ww, ww + wd, ww + 2 * wd + dd, gg, gw), dim=1)
        found_inf = getattr(optimizer, "found_inf", None)
        self._skip[self._slot] = 0.0 if found_inf is None else found_inf.to(self._skip).sum()
        if self._group is not None:                     # local shards → global inner products
            if self._replicated is not None and torch.distributed.get_rank(self._group) != 0:
                self._buf[self._slot, self._replicated] = 0.0   # counted once, not once per rank
            all_reduce(self._buf[self._slot], self._group)
        self._before_w = None
        self._steps.append(step)
        self._slot += 1
        if self._slot == self.chunk:
            self._flush()

    def _hyper_now(self) -> list[list[float]]:
        """Every parameter group's (η, weight_decay, μ or β₁, β₂) in force now (HYPER order)."""
        return [list(astuple(optimizers.hyper_of(grp, self.optimizer)))
                for grp in self.optimizer.param_groups]

    def sync(self, steps_taken: int) -> None:
        """Records as *skipped* every optimizer step up to ``steps_taken`` whose ``step()`` never
        ran (AMP's ``GradScaler`` found an inf and did not call it: no hook fired). Trainers'
        callbacks call it with their own step count; a plain loop under a scaler calls it with
        the iteration number + 1. A capture still pending (its step never ran) is dropped."""
        if self._step < steps_taken:
            self._before_w = None
        while self._step < steps_taken:
            if self._step % self.every == 0:
                self._hyper.append(self._hyper_now())
                self._buf[self._slot] = float("nan")
                self._skip[self._slot] = 1.0
                self._steps.append(self._step)
                self._slot += 1
                if self._slot == self.chunk:
                    self._flush()
            self._step += 1

    def _flush(self) -> None:
        if self._slot:
            self._host.append(self._buf[: self._slot].cpu().numpy().copy())
            self._host_skip.append(self._skip[: self._slot].cpu().numpy() > 0)
            self._slot = 0
            # the records reach the host once per chunk: print if a multiple of ``progress``
            # was passed since the last line (at most one line per flush)
            if self.progress and len(self._steps) // self.progress > self._progress_lines:

                self._progress_lines = len(self._steps) // self.progress
                print(progress_line(self.records()), flush=True)

    # --- results ----------------------------------------------------------------------------

    def records(self, since: int = 0) -> Records:
        """Everything recorded so far (from the ``since``-th record on), on the host; copies the
        device buffer's partial chunk. O(new records) for a logger that asks every few steps."""
        first = since // self.chunk
        parts, skips = list(self._host[first:]), list(self._host_skip[first:])
        if self._slot:
            parts.append(self._buf[: self._slot].cpu().numpy().copy())
            skips.append(self._skip[: self._slot].cpu().numpy() > 0)
        rows, cut = self._buf.shape[1], since - first * self.chunk
        gram = np.concatenate(parts)[cut:] if parts else np.zeros((0, rows, len(GRAM)))
        skipped = np.concatenate(skips)[cut:] if skips else np.zeros(0, dtype=bool)
        gram[skipped] = np.nan          # a skipped update: no angle, not a zero one
        groups = len(self.optimizer.param_groups)
        steps = self._steps[since:]
        return Records(self.tracked, np.array(steps, dtype=np.int64), gram,
                       np.array(self._hyper[since:], dtype=float).reshape(len(steps), groups,
                                                                          len(HYPER)),
                       type(self.optimizer).__name__, self.every, self.units,
                       self.decoupled_weight_decay, dict(self._missing), skipped)

    @property
    def recorded(self) -> int:
        """How many steps have been recorded (skipped ones included)."""
        return len(self._steps)

    def verdicts(self, **criterion):
        """Per-tensor verdicts (:func:`wd_claims.monitor_report.judge_records`)."""
        return judge_records(self.records(), **criterion)

    def summary(self, **criterion) -> str:
        """The verdict table, for a terminal."""
        return summary_table(self.verdicts(**criterion))

    def report(self, directory, title: str = "Training-run monitor", **criterion) -> dict:
        """Writes monitor.md, monitor.json and monitor.png into ``directory``; returns the paths
        (on rank 0; other ranks of a process group write nothing and return {})."""
        if distributed() and torch.distributed.get_rank() != 0:
            return {}
        return write_report(self.records(), directory, title=title, **criterion)

    def close(self) -> None:
        """Removes the hooks (the records stay); idempotent."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if getattr(self.optimizer, "_wd_claims_monitor", None) is self:
            self.optimizer._wd_claims_monitor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(rows,) float64 row-wise inner products of two (rows, n) tensors: products and sums in the
    tensors' precision (float32 at least), summed by torch's cascade reduction (error O(ε·log n),
    measured 1.3e-8 relative on ⟨w, w⟩ at n = 2.4·10⁶, 3.3× faster than a float64-accumulating
    sum; BLAS dot errs by 3e-5 there: scripts/monitor_inner_products.py), then float64 for the
    algebra. ⟨w, w'⟩ and ⟨w', w'⟩ are rebuilt from d = w' − w as ⟨w, w⟩ + ⟨w, d⟩ and
    ⟨w, w⟩ + 2⟨w, d⟩ + ⟨d, d⟩: the update's own inner products are summed with their own
    relative precision (a float32 ⟨w, w'⟩ would carry ⟨w, w⟩'s rounding, ~1e-7, into
    sin²θ ~ θ²); ``series`` then forms
    ⟨w,w⟩⟨w',w'⟩ − ⟨w,w'⟩² in float64, which loses ~log₁₀(1/θ²) of its 16 digits."""
    return (a * b).sum(dim=1).to(torch.float64)


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose parameter names the user knows: through ``torch.compile``'s
    ``OptimizedModule`` (``_orig_mod``) and DDP's ``module`` (same parameter objects)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_sharded(t: torch.Tensor) -> bool:
    """A DTensor (FSDP2's ``fully_shard`` parameters) whose placement shards it."""
    return hasattr(t, "to_local") and any(p.is_shard() for p in getattr(t, "placements", ()))


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank's own shard of a DTensor; the tensor itself otherwise."""
    return t.to_local() if hasattr(t, "to_local") else t


def shard_group(params):
    """The process group the tracked tensors are sharded over (None: nothing is sharded). One
    group for all: a monitor over tensors sharded on different meshes is refused."""
    groups = {id(p.device_mesh.get_group()): p.device_mesh.get_group()
              for p in params if is_sharded(p)}
    if len(groups) > 1:
        raise NotImplementedError("the tracked tensors are sharded over different process groups")
    return next(iter(groups.values()), None)


def all_reduce(t: torch.Tensor, group) -> None:
    """Sums ``t`` in place over ``group``; a failing process group is said, not hidden."""
    try:
        torch.distributed.all_reduce(t, group=group)
    except Exception as err:   # gloo/NCCL raise RuntimeError subclasses, or DistBackendError
        raise RuntimeError("wd_claims.monitor: summing the shards' inner products over the "
                           f"process group failed ({type(err).__name__}: {err}); every rank "
                           "must call optimizer.step() for the same steps") from err
