"""The user's own functions named in the config (`features.spurious_detector`,
`features.custom_metrics.<name>.function`): loaded, and tried once before any job runs.

A function is given as "package.module:function" or "path/to/file.py:function" and is called as
fn(images, prompts): images float32 in [0, 1] of shape (n, H, W) (grey) or (n, H, W, 3) (colour),
prompts a list of n strings ("" for the unconditional pool); it returns n numbers. Every error
names the config field, the file and line at fault, and what was expected.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

import numpy as np

EXPECTED = "fn(images, prompts) returning one number per image"


class UserCodeError(ValueError):
    """A configured function that cannot be imported, called or trusted; the message names the
    config field, the file and line, and what was expected."""


def load_callable(spec: str, field: str | None = None):
    """'package.module:function' or 'path/to/file.py:function' -> the function."""
    where = f"{field}: " if field else ""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise UserCodeError(f"{where}{spec!r}: expected 'module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise UserCodeError(
                    f"{where}{spec!r}: file not found: {path} (a relative path is taken from the "
                    "folder the workflow runs in)"
                )
            module_spec = importlib.util.spec_from_file_location(
                f"surrogateshap_user_{path.stem}", path
            )
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UserCodeError:
        raise
    except SyntaxError as error:
        raise UserCodeError(
            f"{where}{spec!r}: {error.filename}, line {error.lineno}: syntax error: {error.msg}"
        ) from None
    except ImportError as error:
        raise UserCodeError(
            f"{where}{spec!r}: cannot import {module_name!r}: {error} (a module must be importable "
            "from the folder the workflow runs in, or give a path: 'path/to/file.py:function')"
        ) from None
    except Exception as error:  # noqa: BLE001 - the user's module raised while it was imported
        raise UserCodeError(
            f"{where}{spec!r}: importing {module_name!r} raised {_raised(error)}"
        ) from None
    if not hasattr(module, function):
        defined = sorted(
            name
            for name, value in vars(module).items()
            if callable(value) and not name.startswith("_")
        )
        raise UserCodeError(
            f"{where}{spec!r}: {getattr(module, '__file__', module_name)} has no function "
            f"{function!r} (it defines: {', '.join(defined) or 'no public function'})"
        )
    fn = getattr(module, function)
    if not callable(fn):
        raise UserCodeError(
            f"{where}{spec!r}: {function!r} is a {type(fn).__name__}, not a function"
        )
    return fn


def _raised(error: BaseException, user_file: str | None = None) -> str:
    """'TypeError: ... (file.py, line 3)': the exception and the line it came from: the innermost
    frame in `user_file` (the user's own code, not the library it called), else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if user_file and f.filename == user_file]
    frame = (own or frames or [None])[-1]
    at = f" ({frame.filename}, line {frame.lineno})" if frame else ""
    return f"{type(error).__name__}: {error}{at}"


def _source(fn) -> str | None:
    code = getattr(fn, "__code__", None)
    return code.co_filename if code else None


def _defined_at(fn) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}, line {code.co_firstlineno}" if code else repr(fn)


def sample_batch(image_shape: tuple[int, ...], n: int = 2, seed: int = 0):
    """A tiny synthetic batch of the configured image shape, and its prompts."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, *image_shape), dtype=np.float32)
    prompts = [""] + [f"a test image {i}" for i in range(1, n)]
    return images, prompts


def check_callable(field: str, spec: str, image_shape: tuple[int, ...]) -> list[str]:
    """Problems of one configured function: imported, its signature against fn(images, prompts),
    and one call on a synthetic batch of `image_shape` images whose result must be one finite
    number per image. An empty list when it passes."""
    try:
        fn = load_callable(spec, field)
    except UserCodeError as error:
        return [str(error)]
    images, prompts = sample_batch(image_shape)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: the call decides
        signature = None
    if signature is not None:
        try:
            signature.bind(images, prompts)
        except TypeError:
            return [
                f"{field}: {spec!r} is defined as {fn.__name__}{signature} "
                f"({_defined_at(fn)}); expected {EXPECTED}"
            ]
    try:
        result = fn(images, prompts)
    except Exception as error:  # noqa: BLE001 - whatever the user's function raised
        return [
            f"{field}: {spec!r} raised {_raised(error, _source(fn))} when called on {len(images)} synthetic "
            f"images of shape {images.shape[1:]} (float32 in [0, 1]); expected {EXPECTED}"
        ]
    try:
        values = np.asarray(result, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return [
            f"{field}: {spec!r} returned {type(result).__name__} {_short(result)} for "
            f"{len(images)} images; expected {EXPECTED}"
        ]
    if len(values) != len(images):
        return [
            f"{field}: {spec!r} returned {len(values)} value(s) for {len(images)} images "
            f"({_short(result)}); expected {EXPECTED}"
        ]
    if not np.all(np.isfinite(values)):
        return [
            f"{field}: {spec!r} returned non-finite values {values.tolist()} for {len(images)} "
            "synthetic images; expected finite numbers"
        ]
    return []


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
