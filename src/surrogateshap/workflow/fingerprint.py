"""Fingerprints of what a stage reads besides its config values: the user's data, weight and code
files, and the workflow's own code. They go into the stage keys (see `config.stage_keys`), so a
file changed in place gets its dependants new cache paths, never a silent reuse.

- A file: its resolved path, size and modification time (ns); a folder: the same for every file
  in it. Cheap (no file is read), and `touch` counts as a change, as it does for Snakemake.
- A folder dataset: the metadata table's bytes (SHA-256) and each listed image's path, size and
  modification time, hashed into one value (stat only: 100,000 images cost one stat each).
- A user callable ("file.py:function" or "module:function"): the SHA-256 of its source file.
- A hub id (a model path that is no local file): the revision the local hub cache resolves
  `main` to, where it has one; else the id alone (pin a revision in the id to be exact).
- Code: the SHA-256 of a stage's rule scripts and of every module of this package they import,
  directly or not (found by reading the imports, not by importing).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # surrogateshap/ (this file is in workflow/)
# The schema marks a setting that names a file or a callable with this keyword.
SCHEMA_KEYWORD = "x-fingerprint"


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _sha256(path: Path) -> str:
    return _sha256_of(_stat_key(Path(path)))


@functools.lru_cache(maxsize=4096)
def _sha256_of(key: tuple) -> str:
    """By (path, size, mtime): each file read once per process, however many stages run it."""
    path = Path(key[0])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path) -> dict:
    """A local file or folder: path, size and mtime of each file; else a hub id (see module doc)."""
    local = Path(path).expanduser()
    if local.is_file():
        stat = local.stat()
        return {"path": str(local.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if local.is_dir():
        digest = hashlib.sha256()
        n_files = 0
        for folder, subdirs, files in os.walk(local):
            subdirs.sort()
            for name in sorted(files):
                file = Path(folder, name)
                stat = file.stat()
                rel = file.relative_to(local).as_posix()
                digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                n_files += 1
        return {"path": str(local.resolve()), "files": n_files, "stat": digest.hexdigest()[:16]}
    return {"id": str(path), "revision": hub_revision(str(path))}


def hub_revision(repo_id: str) -> str | None:
    """The commit the local Hugging Face cache resolves `main` to, or None (not cached)."""
    if repo_id.count("/") != 1:
        return None
    hub = os.environ.get("HF_HUB_CACHE") or Path(
        os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"), "hub"
    )
    ref = Path(hub, "models--" + repo_id.replace("/", "--"), "refs", "main")
    return ref.read_text().strip() if ref.is_file() else None


def callable_fingerprint(spec: str) -> dict:
    """'file.py:function' or 'module:function': the source file's SHA-256 (None if not found)."""
    module_name = spec.rpartition(":")[0]
    if module_name.endswith(".py"):
        source = Path(module_name)
    else:
        import importlib.util

        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        source = Path(found.origin) if found is not None and found.origin else None
    if source is None or not source.is_file():
        return {"callable": spec, "source": None}
    return {"callable": spec, "source": str(source.resolve()), "sha256": _sha256(source)}


def dataset_fingerprint(data_cfg: dict) -> dict | None:
    """A folder dataset: metadata bytes and every listed image's path, size and mtime. None for
    the built-in digits (made by our code, which the code fingerprint covers). A table that
    cannot be read gets a fingerprint of its bytes only: prepare_data reports the problem."""
    if data_cfg.get("source") != "folder" or not data_cfg.get("root"):
        return None
    from ..data.datasets import read_metadata

    root = Path(data_cfg["root"])
    metadata = Path(data_cfg.get("metadata") or root / "metadata.csv")
    found = {"root": str(root.resolve()), "metadata": str(metadata.resolve())}
    if not metadata.is_file():
        return found | {"metadata_sha256": None}
    found["metadata_sha256"] = _sha256(metadata)
    try:
        names = read_metadata(metadata)["file_name"].astype(str).tolist()
    except Exception:  # noqa: BLE001 - any unreadable table: prepare_data names the problem
        return found
    base, lines = str(root), []
    for name in names:  # plain strings, not pathlib: this loop is the cost at 100,000 images
        try:
            stat = os.stat(os.path.join(base, name))
            lines.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
        except (OSError, ValueError):
            lines.append(f"{name}\0missing\n")
    images_stat = hashlib.sha256("".join(lines).encode()).hexdigest()[:16]
    return found | {"images": len(names), "images_stat": images_stat}


def fingerprinted_settings(schema: dict, config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted config path -> 'file' or 'callable', for every set value whose schema carries
    `x-fingerprint` (walking properties, and maps given by additionalProperties)."""
    found: dict[str, str] = {}
    if not isinstance(config, dict):
        return found
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for name, value in config.items():
        sub = properties.get(name, extra if isinstance(extra, dict) else None)
        if not isinstance(sub, dict) or value is None:
            continue
        path = f"{prefix}{name}"
        if SCHEMA_KEYWORD in sub:
            found[path] = sub[SCHEMA_KEYWORD]
        elif isinstance(value, dict):
            found |= fingerprinted_settings(sub, value, path + ".")
    return found


def external_fingerprints(config: dict, schema: dict) -> dict[str, dict]:
    """Dotted config path -> fingerprint of the data, weights or code it names ('data': the
    folder dataset)."""
    found: dict[str, dict] = {}
    dataset = dataset_fingerprint(config.get("data") or {})
    if dataset is not None:
        found["data"] = dataset
    for path, kind in fingerprinted_settings(schema, config).items():
        value = config
        for part in path.split("."):
            value = value[part]
        found[path] = callable_fingerprint(value) if kind == "callable" else file_fingerprint(value)
    return found


# --------------------------------------------------------------------------- code
def _imported_modules(source: Path, module: str | None) -> frozenset[str]:
    """Names of this package's modules that `source` imports (module: its own dotted name)."""
    return _imports_of(_stat_key(source), module)


@functools.lru_cache(maxsize=4096)
def _imports_of(key: tuple, module: str | None) -> frozenset[str]:
    source = Path(key[0])
    package = PACKAGE_DIR.name
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package
                if module is None:
                    continue
                parts = module.split(".")
                is_package = source.name == "__init__.py"
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return frozenset(n for n in names if n == package or n.startswith(package + "."))


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.is_file():
            return candidate
    return PACKAGE_DIR / "__init__.py" if not parts else None


def code_files(scripts) -> list[Path]:
    """The scripts and every package module they import, directly or not (parents included:
    importing a.b runs a/__init__.py)."""
    files = {Path(s).resolve(): None for s in scripts}
    todo = [(Path(s).resolve(), None) for s in scripts]
    seen: set[str] = set()
    while todo:
        source, module = todo.pop()
        for name in _imported_modules(source, module):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                parent = ".".join(parts[:i])
                if parent in seen:
                    continue
                seen.add(parent)
                file = _module_file(parent)
                if file is not None:
                    files[file] = parent
                    todo.append((file, parent))
    return sorted(files)


def code_fingerprint(scripts) -> str:
    """SHA-256 (16 hex digits) of the scripts and the package modules they run (see code_files),
    by name (package-relative, or the script's file name) and content: the same code gives the
    same hash wherever the package and the workflow are installed."""
    named = sorted(
        (
            file.relative_to(PACKAGE_DIR.parent).as_posix()
            if file.is_relative_to(PACKAGE_DIR.parent)
            else f"scripts/{file.name}",
            file,
        )
        for file in code_files(scripts)
    )
    digest = hashlib.sha256()
    for name, file in named:
        digest.update(f"{name}\0{_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]
