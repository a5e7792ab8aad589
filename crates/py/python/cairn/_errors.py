"""The exceptions cairn raises. Each carries cairn's message (``str(e)``) and, when cairn has
advice, a ``hint`` (the line the ``cairn`` command prints after ``hint:``)."""

from __future__ import annotations


class CairnError(Exception):
    """Anything cairn refuses or fails to do: the base of every cairn exception.

    ``str(e)`` is cairn's message, with its causes after ``": "``; ``e.hint`` is what to do about
    it, or None.
    """

    message: str
    hint: str | None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class NotARepositoryError(CairnError):
    """Not inside a git repository where one is needed (a lock with code, a checkpoint outside
    any locked run)."""


class NoRunError(CairnError):
    """``cairn.checkpoint()`` outside a locked run (no ``cairn lock -- ...`` around the process)
    and without ``lock=`` naming a lock to add to."""


class LockTooNewError(CairnError):
    """The lockfile was written by a newer cairn: upgrade this package to read it."""


class InvalidLockError(CairnError):
    """The lockfile is not valid TOML or breaks a rule of the format."""


class MissingPathError(CairnError, FileNotFoundError):
    """A file or directory cairn was given (a checkpoint, a target) does not exist. Also a
    ``FileNotFoundError``."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        CairnError.__init__(self, message, hint)
