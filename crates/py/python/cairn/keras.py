"""A Keras 3 callback that saves the model and records each save with :func:`cairn.checkpoint`.

Use it where you would use ``keras.callbacks.ModelCheckpoint``::

    from cairn.keras import CairnCallback

    model.fit(x, y, epochs=3, callbacks=[CairnCallback("ckpt/epoch-{epoch:02d}.weights.h5")])

Run the script under ``cairn lock -- python train.py``: the lock gets one checkpoint per save,
with the epoch as its step, the epoch's logs (``loss``, ``val_loss``, ...) as its metrics and the
previous save as its parent. Importing this module imports ``keras``.
"""

from __future__ import annotations

import os
from typing import Any

import keras

import cairn

from ._hooks import record as _record

__all__ = ["CairnCallback"]


class CairnCallback(keras.callbacks.Callback):
    """Save the model at the end of every ``every``-th epoch and record the file in the run's lock.

    ``filepath`` is formatted as ``ModelCheckpoint``'s is: ``{epoch}`` (counted from 1) and the
    epoch's logs by name (``"ckpt/{epoch:02d}-{val_loss:.3f}.keras"``). A name ending in
    ``.weights.h5`` saves the weights only (``model.save_weights``), one ending in ``.keras`` the
    whole model (``model.save``). A ``.keras`` archive stores the time it was written, so two
    identical trainings give different files; save ``.weights.h5`` when a rebuild must give
    bit-identical checkpoints.

    Each save is recorded with ``step`` = the epoch, ``metrics`` = the epoch's logs (finite
    numbers only) and ``parent`` = the previous save of this callback; the first save's parent is
    ``parent`` when given (the checkpoint this training resumed from), else cairn's default (the
    run's previous checkpoint, if any). Only rank 0 saves and records (see :func:`cairn.rank`)
    unless ``all_ranks=True``. ``lock`` is passed on to :func:`cairn.checkpoint` (outside
    ``cairn lock``: an existing lock to add to).

    Outside ``cairn lock`` (``python train.py`` alone) the training goes on: saves are not
    recorded, and a ``RuntimeWarning`` says so once. Other errors are raised.

    ``saved`` lists the :class:`cairn.Checkpoint` of every save, in order.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        *,
        every: int = 1,
        parent: str | os.PathLike[str] | None = None,
        lock: str | os.PathLike[str] | None = None,
        all_ranks: bool = False,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be 1 or more, not {every}")
        self.filepath = os.fspath(filepath)
        if not self.filepath.endswith((".keras", ".weights.h5")):
            raise ValueError(
                f"{self.filepath!r}: the name must end in .keras (the whole model) or"
                " .weights.h5 (the weights), as Keras 3 requires"
            )
        self.every = every
        self.lock = lock
        self.all_ranks = all_ranks
        self.saved: list[cairn.Checkpoint] = []
        self._parent = None if parent is None else os.fspath(parent)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every != 0:
            return
        if not self.all_ranks and cairn.rank() != 0:
            return
        logs = dict(logs or {})
        path = self.filepath.format(epoch=epoch + 1, **logs)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if path.endswith(".weights.h5"):
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)
        recorded = _record(
            path,
            step=epoch + 1,
            parent=self._parent,
            logged=logs,
            lock=self.lock,
            all_ranks=self.all_ranks,
        )
        if recorded is not None:
            self.saved.append(recorded)
        self._parent = path
