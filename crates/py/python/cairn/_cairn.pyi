"""Type stubs of the native module ``cairn._cairn``. Use the wrappers in ``cairn`` instead: these
return JSON text, which ``cairn`` turns into dicts and objects."""

__version__: str

def hash(path: str) -> str: ...
def checkpoint(
    path: str,
    step: int | None = None,
    parent: str | None = None,
    no_parent: bool = False,
    metrics: dict[str, float] = ...,
    lock: str | None = None,
    no_cache: bool = False,
) -> str: ...
def env(python: str | None = None) -> str: ...
def verify(
    lock: str | None = None,
    python: str | None = None,
    strict: bool = False,
    data: dict[str, str] = ...,
    no_cache: bool = False,
) -> str: ...
def lineage(target: str | None = None, locks: list[str] = ...) -> str: ...
def run_id() -> str | None: ...
