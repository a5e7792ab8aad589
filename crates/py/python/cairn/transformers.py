"""A Hugging Face ``transformers`` callback that records each checkpoint the ``Trainer`` saves
with :func:`cairn.checkpoint`::

    from cairn.transformers import CairnCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[CairnCallback()])

Run the script under ``cairn lock -- python train.py``: every ``checkpoint-N`` directory the
Trainer writes (``save_strategy``, ``save_steps``) is recorded with ``N`` as its step, the last
logged values (``loss``, ``eval_loss``, ``learning_rate``, ...) as its metrics and the previous
save as its parent. Importing this module imports ``transformers``.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import cairn

from ._hooks import record as _record

__all__ = ["CairnCallback"]


class CairnCallback(TrainerCallback):
    """Record every checkpoint directory the ``Trainer`` saves (``on_save``).

    The directory is ``<output_dir>/checkpoint-<global step>``, as the Trainer names it; its step
    is the global step, its metrics the latest value of each name in ``state.log_history`` (finite
    numbers only), its parent the previous save, or ``parent`` for the first (the checkpoint the
    training resumed from; by default cairn's: the run's previous checkpoint, if any). Only the
    world's main process records. With ``save_total_limit`` the Trainer deletes old checkpoints;
    the lock keeps their entries marked deleted by the run, which ``cairn verify`` reports as
    such, not as missing.

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

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        logged: dict[str, Any] = {}
        for entry in state.log_history:
            logged.update(entry)
        logged.pop("step", None)
        recorded = _record(
            path,
            step=state.global_step,
            parent=self._parent,
            logged=logged,
            lock=self.lock,
            all_ranks=True,
        )
        if recorded is not None:
            self.saved.append(recorded)
        self._parent = path
