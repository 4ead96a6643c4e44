"""A PyTorch Lightning ``Callback`` that attaches :class:`wd_claims.monitor.Monitor`.

    trainer = L.Trainer(callbacks=[MonitorCallback(input_shape=(1, 8, 8))])

Lightning's automatic optimization runs ``optimizer.step(closure)`` (forward and backward inside
the step), so the optimizer's pre-hook would see last step's gradients: the callback captures
(w_t, g_t) in ``on_before_optimizer_step``, after the closure's backward and Lightning's unscaling,
and the optimizer's post-hook completes the record (``capture="external"``). Gradient accumulation
is followed (one record per optimizer step); steps AMP skipped are recorded as skipped
(:meth:`Monitor.sync` with the trainer's step count since the monitor attached, so a resumed run
does not count the restored steps). A fused optimizer under AMP is not supported here: the
capture runs before the scaler's step, with the gradients still scaled. Scalars go to every
logger of the trainer (``log_metrics``: TensorBoard's ``add_scalar`` per tag) every ``log_every``
optimizer steps
(default: the trainer's ``log_every_n_steps``); the report is written at the end of fit, by rank 0,
to ``report_dir`` (default: the logger's folder, else ``reports/monitor``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from wd_claims.integrations import scalars
from wd_claims.monitor import Monitor


class MonitorCallback(pl.Callback):
    """Args: ``input_shape`` or ``tensors`` and the Monitor's other keyword arguments; ``log_every``
    (optimizer steps, None: the trainer's), ``report_dir`` (None: beside the logs), ``criterion``
    (the report's judging criterion, e.g. ``{"window": 1024}``)."""

    def __init__(self, *, log_every: int | None = None, report_dir: str | Path | None = None,
                 criterion: dict | None = None, **monitor_kwargs):
        self.monitor_kwargs, self.log_every, self.report_dir = monitor_kwargs, log_every, report_dir
        self.criterion = criterion or {}
        self.monitor: Monitor | None = None
        self._logged = 0        # records already logged
        self._offset = 0        # the trainer's global_step when the monitor attached (a resume)
        self._last_log = 0      # the global_step of the last log

    def on_fit_start(self, trainer, pl_module):
        if len(trainer.optimizers) != 1:
            raise ValueError(f"MonitorCallback follows one optimizer; the trainer has "
                             f"{len(trainer.optimizers)}")
        optimizer = trainer.optimizers[0]
        if self.monitor is not None and self.monitor.optimizer is optimizer and \
                self.monitor._hooks:
            return                          # fit() again with the same optimizer: no new hooks
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = Monitor(pl_module, optimizer, capture="external", **self.monitor_kwargs)
        self._logged, self._offset = 0, trainer.global_step
        self._last_log = trainer.global_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.monitor.sync(trainer.global_step - self._offset)   # steps skipped since the last
        self.monitor.capture()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.monitor.sync(trainer.global_step - self._offset)
        every = self.log_every or trainer.log_every_n_steps
        if trainer.global_step - self._last_log >= every and self.monitor.recorded > self._logged:
            values = scalars(self.monitor.records(since=self._logged))
            self._logged, self._last_log = self.monitor.recorded, trainer.global_step
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step)

    def on_fit_end(self, trainer, pl_module):
        folder = self.report_dir or (Path(trainer.log_dir) / "monitor" if trainer.log_dir
                                     else Path("reports/monitor"))
        if trainer.is_global_zero:
            self.paths = self.monitor.report(folder, title="Training-run monitor (Lightning)",
                                              **self.criterion)
        self.monitor.close()
