"""A Lightning callback that records every checkpoint the ``Trainer`` saves with
:func:`cairn.checkpoint`::

    from cairn.lightning import CairnCallback

    trainer = L.Trainer(max_epochs=3, callbacks=[ModelCheckpoint(dirpath="ckpt"), CairnCallback()])

Run the script under ``cairn lock -- python train.py``: each file written by
``Trainer.save_checkpoint`` (which ``ModelCheckpoint`` and your own code call) is recorded with
the global step as its step, the trainer's ``callback_metrics`` (what ``self.log`` logged) as
its metrics and the previous save as its parent. Importing this module imports ``lightning``
(the ``lightning`` package; ``pytorch_lightning`` works the same through its own import name).
"""

from __future__ import annotations

import os
from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the standalone pytorch_lightning distribution
    from pytorch_lightning import Callback, LightningModule, Trainer  # type: ignore[no-redef]

import cairn

from ._hooks import record as _record

__all__ = ["CairnCallback"]


class CairnCallback(Callback):
    """Record each checkpoint the trainer writes.

    Lightning's ``on_save_checkpoint`` hook runs before the file exists, so from ``setup`` to
    ``teardown`` this callback wraps the trainer's ``save_checkpoint``: after a save returns, the
    file is recorded (on the global rank 0 only) with the global step, the last logged metrics
    (finite numbers) and the previous save as its parent, or ``parent`` for the first (the
    checkpoint the training resumed from; by default cairn's: the run's previous checkpoint, if
    any). A ``save_last="link"`` symlink is not a save and is not recorded.

    Outside ``cairn lock`` (``python train.py`` alone) the training goes on: saves are not
    recorded, and a ``RuntimeWarning`` says so once. Other errors are raised.

    ``saved`` lists the :class:`cairn.Checkpoint` of every save, in order.
    """

    def __init__(
        self,
        *,
        parent: str | os.PathLike[str] | None = None,
        lock: str | os.PathLike[str] | None = None,
    ) -> None:
        self.lock = lock
        self.saved: list[cairn.Checkpoint] = []
        self._parent = None if parent is None else os.fspath(parent)
        self._wrapped: Any = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._wrapped is not None:
            return
        original = trainer.save_checkpoint
        self._wrapped = original

        def save_checkpoint(filepath: Any, *args: Any, **kwargs: Any) -> None:
            original(filepath, *args, **kwargs)
            if trainer.is_global_zero:
                self._after_save(trainer, os.fspath(filepath))

        trainer.save_checkpoint = save_checkpoint  # type: ignore[method-assign]

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._wrapped is not None:
            del trainer.save_checkpoint  # the instance attribute: the method shows again
            self._wrapped = None

    def _after_save(self, trainer: Trainer, path: str) -> None:
        recorded = _record(
            path,
            step=trainer.global_step,
            parent=self._parent,
            logged=trainer.callback_metrics,
            lock=self.lock,
            all_ranks=True,
        )
        if recorded is not None:
            self.saved.append(recorded)
        self._parent = path
