"""The test suite's unpickling guard: while the tests run, in the pytest process and in every
Python process they start (this folder is on PYTHONPATH; `sitecustomize` installs it there),
`pickle.load`, `pickle.Unpickler` (and the pure-Python `pickle._load` / `pickle._Unpickler`)
refuse to unpickle, whatever the spelling of the call (`from torch import load`,
`import pickle as pk`, `torch.serialization.load`, `np.load(allow_pickle=True)`,
`pd.read_pickle`, ...): torch.load without weights_only=True unpickles through
`pickle.Unpickler`, while torch's weights-only loader and safetensors never touch it.

Allowed: unpickling by the standard library's process machinery (multiprocessing,
concurrent.futures), by Snakemake (its own IO cache) and by submitit (its own job files),
which read files they wrote themselves, never a path from the config. `pickle.loads` of
in-memory bytes stays (Snakemake's script preamble passes the rule's object that way).

Each refusal is recorded in REFUSED and raised as UnsafeUnpickling; tests/conftest.py fails
any test during which something was refused, even if the code under test caught the error.
"""

from __future__ import annotations

import os
import pickle
import sys

ALLOWED_CALLERS = ("multiprocessing", "concurrent", "snakemake", "submitit", "cloudpickle")
REFUSED: list[str] = []
_ORIGINAL = {}


class UnsafeUnpickling(RuntimeError):
    pass


def _caller(skip_self=None) -> str:
    """Module name of the first frame outside this file (and outside the unpickler's own
    __init__ chain when `skip_self` is the unpickler being built)."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_globals.get("__name__") == __name__
        or (skip_self is not None and frame.f_locals.get("self") is skip_self)
    ):
        frame = frame.f_back
    return (frame.f_globals.get("__name__") or "?") if frame is not None else "?"


def _allowed(module: str) -> bool:
    return module.split(".")[0] in ALLOWED_CALLERS


def _refuse(what: str, source, module: str):
    name = getattr(source, "name", None) or type(source).__name__
    message = (
        f"unpickling refused during the tests: {what} of {name!r} called from {module} "
        "(load weights with safetensors or torch.load(..., weights_only=True))"
    )
    REFUSED.append(message)
    raise UnsafeUnpickling(message)


def _guarded_load(original, what):
    def load(file, *args, **kwargs):
        module = _caller()
        if not _allowed(module):
            _refuse(what, file, module)
        return original(file, *args, **kwargs)

    load.__wrapped__ = original
    return load


def _guarded_unpickler(original, what):
    class Unpickler(original):
        def __init__(self, file, *args, **kwargs):
            module = _caller(skip_self=self)
            if not _allowed(module):
                _refuse(what, file, module)
            super().__init__(file, *args, **kwargs)

    Unpickler.__name__ = Unpickler.__qualname__ = original.__name__
    return Unpickler


def install() -> None:
    if _ORIGINAL:
        return
    for attr in ("load", "_load", "Unpickler", "_Unpickler"):
        _ORIGINAL[attr] = getattr(pickle, attr)
    pickle.load = _guarded_load(_ORIGINAL["load"], "pickle.load")
    pickle._load = _guarded_load(_ORIGINAL["_load"], "pickle._load")
    pickle.Unpickler = _guarded_unpickler(_ORIGINAL["Unpickler"], "pickle.Unpickler")
    pickle._Unpickler = _guarded_unpickler(_ORIGINAL["_Unpickler"], "pickle._Unpickler")
    os.environ["SURROGATESHAP_PICKLE_GUARD"] = "1"
