"""cairn: record ML training runs in ``cairn.lock``, from inside the training loop.

The ``cairn`` command (installed with this package) locks a run: ``cairn lock -- python
train.py``. Inside that run, this module records what the command line would, without starting
a process::

    import cairn

    for step in range(steps):
        ...
        model.save(f"ckpt/step-{step}.keras")
        cairn.checkpoint(f"ckpt/step-{step}.keras", step=step, metrics={"loss": loss})

Every function releases the GIL while it hashes or reads files. Errors are :class:`CairnError`
(or a subclass) with cairn's message and its ``hint``.
"""

from __future__ import annotations

import os
import sys

from . import _cairn
from ._errors import (
    CairnError,
    InvalidLockError,
    LockTooNewError,
    MissingPathError,
    NoRunError,
    NotARepositoryError,
)

__version__: str = _cairn.__version__

__all__ = [
    "CairnError",
    "Checkpoint",
    "Finding",
    "InvalidLockError",
    "LockTooNewError",
    "MissingPathError",
    "NoRunError",
    "NotARepositoryError",
    "Report",
    "checkpoint",
    "env",
    "hash",
    "lineage",
    "rank",
    "run_id",
    "verify",
]


def _loads(text: str):
    import json

    return json.loads(text)


def rank() -> int:
    """This process's rank in a distributed job: ``torch.distributed.get_rank()`` when torch's
    process group is initialised (torch is never imported for this), else ``$RANK``, else 0."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        try:
            if dist.is_available() and dist.is_initialized():
                return int(dist.get_rank())
        except Exception:  # a torch build without distributed support
            pass
    value = os.environ.get("RANK", "").strip()
    if value:
        try:
            return int(value)
        except ValueError:
            raise CairnError(
                f"RANK={value!r} is not a number",
                "set RANK to this process's rank (0 records), or unset it",
            ) from None
    return 0


class Checkpoint:
    """A checkpoint as :func:`checkpoint` recorded it."""

    __slots__ = ("path", "digest", "step", "parent", "parent_run", "lock")

    path: str
    """Its path relative to the project root, as in the lock."""
    digest: str
    """``blake3:<hex>``, as ``cairn hash`` prints it."""
    step: int | None
    parent: str | None
    """The parent as recorded: a checkpoint path of this run, or a digest."""
    parent_run: str | None
    """The run that recorded a parent given by digest or file, when a lock records it."""
    lock: str
    """The lockfile it was written to (the run's in-progress lock during ``cairn lock``)."""

    def __init__(self, d: dict) -> None:
        self.path = d["path"]
        self.digest = d["digest"]
        self.step = d["step"]
        self.parent = d["parent"]
        self.parent_run = d["parent-run"]
        self.lock = d["lock"]

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r}, digest={self.digest!r}, step={self.step!r})"


def checkpoint(
    path: str | os.PathLike[str],
    *,
    step: int | None = None,
    parent: str | os.PathLike[str] | None = None,
    no_parent: bool = False,
    metrics: dict[str, float] | None = None,
    lock: str | os.PathLike[str] | None = None,
    all_ranks: bool = False,
    no_cache: bool = False,
) -> Checkpoint | None:
    """Record the checkpoint (file or directory) at ``path``: what ``cairn checkpoint add`` does,
    in this process.

    Inside ``cairn lock -- COMMAND`` it goes to that run's in-progress lock (``$CAIRN_RUN_LOCK``)
    and into ``cairn.lock`` when the command ends. Outside a run it raises :class:`NoRunError`
    (:class:`NotARepositoryError` outside a git repository), unless ``lock`` names an existing
    lock to add to (relative to the current directory, inside the repository). Safe from many
    processes and threads at once: each call hashes first, then takes a file lock and rewrites
    the lock atomically, so no entry is lost and a crash leaves a valid lock.

    Only rank 0 of a distributed job records (see :func:`rank`); other ranks return None at once
    unless ``all_ranks=True``.

    ``parent`` is the checkpoint this one was trained from (a path, relative to the current
    directory, or a digest ``blake3:...``); by default the previous checkpoint of this run, none
    with ``no_parent=True``. ``metrics`` are finite numbers by name (letters, digits, ``.``,
    ``_``, ``-``).

    Raises :class:`MissingPathError` when ``path`` does not exist, :class:`CairnError` for a
    path outside the project or a bad metric.
    """
    if not all_ranks and rank() != 0:
        return None
    return Checkpoint(
        _loads(
            _cairn.checkpoint(
                os.fspath(path),
                step=step,
                parent=None if parent is None else os.fspath(parent),
                no_parent=no_parent,
                metrics={} if metrics is None else {k: float(v) for k, v in metrics.items()},
                lock=None if lock is None else os.fspath(lock),
                no_cache=no_cache,
            )
        )
    )


def hash(path: str | os.PathLike[str]) -> str:
    """The cairn digest of a file or directory, ``blake3:<hex>``: what ``cairn hash`` prints.

    A file's is the BLAKE3 of its bytes (as ``b3sum``); a directory's is BLAKE3 over the
    b3sum-style manifest of every file below it, sorted by path. Raises
    :class:`MissingPathError` when ``path`` does not exist.
    """
    return _cairn.hash(os.fspath(path))


def env(python: str | os.PathLike[str] | None = None) -> dict:
    """The environment ``cairn lock`` would record, as ``cairn env --format json`` prints it:
    ``python`` (interpreter and packages), ``lockfiles``, ``env`` and ``host``.

    ``python`` is the interpreter to describe [default: as the command chooses: ``python`` in a
    trusted cairn.toml, ``$CAIRN_PYTHON``, ``$VIRTUAL_ENV``, ``$CONDA_PREFIX``, python3 on PATH].
    """
    return _loads(_cairn.env(None if python is None else os.fspath(python)))


class Finding:
    """One difference between the lock and what is on disk (spec/verify-report.md)."""

    __slots__ = ("area", "severity", "subject", "path", "change", "detail")

    area: str
    """``code``, ``data``, ``checkpoint``, ``output``, ``environment`` or ``host``."""
    severity: str
    """``error`` (fails), ``warning`` (environment drift) or ``info`` (host drift)."""
    subject: str
    path: str | None
    change: str
    """``changed``, ``added``, ``removed``, ``mode-changed``, ``missing``, ``unchecked`` or
    ``deleted``."""
    detail: str | None

    def __init__(self, d: dict) -> None:
        self.area = d["area"]
        self.severity = d["severity"]
        self.subject = d["subject"]
        self.path = d.get("path")
        self.change = d["change"]
        self.detail = d.get("detail")

    def __repr__(self) -> str:
        return (
            f"Finding(area={self.area!r}, severity={self.severity!r}, subject={self.subject!r}, "
            f"path={self.path!r}, change={self.change!r})"
        )


class Report:
    """The result of :func:`verify`: the content of ``cairn verify --format json``."""

    __slots__ = ("lock", "run", "ok", "findings", "notes", "checked", "_raw")

    lock: str
    run: str
    ok: bool
    """True when nothing that must match differs (``cairn verify`` exits 0)."""
    findings: list[Finding]
    notes: list[str]
    checked: dict

    def __init__(self, text: str) -> None:
        self._raw = text
        d = _loads(text)
        self.lock = d["lock"]
        self.run = d["run"]
        self.ok = d["ok"]
        self.findings = [Finding(f) for f in d["findings"]]
        self.notes = list(d["notes"])
        self.checked = d["checked"]

    def to_dict(self) -> dict:
        """The report as ``cairn verify --format json`` prints it."""
        return _loads(self._raw)

    def __repr__(self) -> str:
        return f"Report(lock={self.lock!r}, ok={self.ok!r}, findings={len(self.findings)})"


def verify(
    lock: str | os.PathLike[str] | None = None,
    *,
    python: str | os.PathLike[str] | None = None,
    data: dict[str, str] | None = None,
    strict: bool = False,
    no_cache: bool = False,
) -> Report:
    """Check the code, data and checkpoints against ``lock`` [default: cairn.lock at the project
    root], as ``cairn verify`` does: every difference, with ``report.ok`` for the exit status.

    ``data`` says where datasets are (``--data NAME=PATH``), ``python`` which interpreter to
    compare (``--python``), ``strict`` fails on environment and host drift too. Raises
    :class:`CairnError` (or a subclass) where the command exits 2: no lock
    (:class:`MissingPathError`), a lock from a newer cairn (:class:`LockTooNewError`), an
    invalid lock (:class:`InvalidLockError`), a lock with code outside a git repository
    (:class:`NotARepositoryError`).
    """
    return Report(
        _cairn.verify(
            lock=None if lock is None else os.fspath(lock),
            python=None if python is None else os.fspath(python),
            strict=strict,
            data={} if data is None else {k: os.fspath(v) for k, v in data.items()},
            no_cache=no_cache,
        )
    )


def lineage(target: str | os.PathLike[str] | None = None, *, locks: list[str] | None = None) -> dict:
    """Where a model came from, as ``cairn lineage [TARGET] --format json`` prints it: the
    ``locks`` read, the ``nodes`` reachable from the target and the ``edges`` between them.

    ``target`` is a checkpoint file or directory (matched by digest), a digest or a lock;
    without one, every model nothing else builds on. ``locks`` are more directories to read
    locks from (``--locks``).
    """
    return _loads(
        _cairn.lineage(
            None if target is None else os.fspath(target),
            [os.fspath(p) for p in locks or []],
        )
    )


def run_id() -> str | None:
    """The run id of the ``cairn lock -- COMMAND`` this process runs under, or None outside one."""
    return _cairn.run_id()
