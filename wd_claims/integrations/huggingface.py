"""A Hugging Face ``transformers`` ``TrainerCallback`` that attaches
:class:`wd_claims.monitor.Monitor`.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[MonitorTrainerCallback(
        tensors=names)])

The Trainer calls ``optimizer.step()`` without a closure (through accelerate's wrapper, unwrapped
here), so the optimizer's own hooks record each update; gradient accumulation gives one record per
update step; steps the scaler skipped are recorded as skipped (:meth:`Monitor.sync` with
``state.global_step`` counted from where the monitor attached: a resumed run does not count the
restored steps). A callback's ``on_log`` runs after the Trainer's own reporters have
written, so the scalars go to a TensorBoard ``SummaryWriter`` of their own in the Trainer's
TensorBoard folder (:func:`tensorboard_dir`; one ``add_scalar`` per tensor and quantity) every
``args.logging_steps`` update steps, when ``"tensorboard"`` is among ``args.report_to``. The report
is written at the end of training by the main process, to ``report_dir`` (default:
``<output_dir>/monitor``).
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import TrainerCallback

from wd_claims.integrations import scalars
from wd_claims.monitor import Monitor


def _torch_optimizer(optimizer):
    """accelerate's ``AcceleratedOptimizer`` wraps the torch optimizer as ``.optimizer``."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def tensorboard_dir(args) -> str:
    """Where the Trainer's TensorBoard reporter writes: ``TENSORBOARD_LOGGING_DIR``, else
    ``args.logging_dir`` (transformers 4), else ``<output_dir>/runs`` (transformers 5, which adds
    a dated subfolder); the monitor's events go to a ``wd_claims`` subfolder of the last."""
    folder = os.getenv("TENSORBOARD_LOGGING_DIR") or getattr(args, "logging_dir", None)
    return folder or os.path.join(args.output_dir, "runs", "wd_claims")


class MonitorTrainerCallback(TrainerCallback):
    """Args: ``input_shape`` or ``tensors`` and the Monitor's other keyword arguments;
    ``report_dir`` (None: ``<output_dir>/monitor``), ``criterion`` (the report's judging
    criterion, e.g. ``{"window": 1024}``)."""

    def __init__(self, *, report_dir: str | Path | None = None, criterion: dict | None = None,
                 **monitor_kwargs):
        self.monitor_kwargs, self.report_dir = monitor_kwargs, report_dir
        self.criterion = criterion or {}
        self.monitor: Monitor | None = None
        self.writer = None
        self._logged = 0        # records already logged
        self._offset = 0        # state.global_step when the monitor attached (a resume)
        self._last_log = 0

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        optimizer = _torch_optimizer(optimizer)
        if self.monitor is not None and self.monitor.optimizer is optimizer and \
                self.monitor._hooks:
            return
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = Monitor(model, optimizer, **self.monitor_kwargs)
        self._logged, self._offset = 0, state.global_step
        self._last_log = state.global_step
        if state.is_world_process_zero and "tensorboard" in (args.report_to or []):
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=tensorboard_dir(args))

    def on_step_end(self, args, state, control, **kwargs):
        self.monitor.sync(state.global_step - self._offset)
        every = getattr(state, "logging_steps", None) or args.logging_steps   # absolute steps
        if self.writer is not None and state.global_step - self._last_log >= every and \
                self.monitor.recorded > self._logged:
            for tag, value in scalars(self.monitor.records(since=self._logged)).items():
                self.writer.add_scalar(tag, value, state.global_step)
            self._logged, self._last_log = self.monitor.recorded, state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = self.report_dir or Path(args.output_dir) / "monitor"
            self.paths = self.monitor.report(folder, title="Training-run monitor (HF Trainer)",
                                              **self.criterion)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.monitor.close()
