"""The deployable-package manifest: what a package holds and how it was built.

A package is a directory with ``manifest.json`` and the backend artifacts it lists. The
manifest records the model's name and task, the target and backend it was built for, the
precision, the input/output tensor specs, the preprocessing the caller must apply, the
toolchain versions, the sha256 of every artifact, the fidelity report against the fp32
reference and the measured latency (with every candidate considered by ``auto``).

Schema (``schema_version`` 1), all keys required unless marked optional::

    {
      "schema_version": 1,
      "format": "lanner-package",
      "name": str, "task": str | null,
      "target": str,                      # a key of lanner.targets.TARGETS
      "backend": "openvino" | "onnxruntime" | "tvm",
      "precision": "fp32" | "fp16" | "bf16" | "int8",
      "inputs":  [{"name": str, "shape": [int | str | null, ...], "dtype": str}, ...],
      "outputs": [...same...],
      "preprocessing": dict | null,       # free-form, e.g. {"size": [112, 112], "mean": ..., "std": ...}
      "artifacts": {role: relative path}, # e.g. {"model": "model.xml", "weights": "model.bin"}
      "files": {relative path: sha256 hex},  # every file of the package except manifest.json
      "backend_options": dict,            # what the loader passes to the backend (e.g. precision hint)
      "target_info": dict,                # e.g. TVM target dict, host triple/CPU, CUDA arch
      "toolchain": {package: version},
      "fidelity": dict | null,            # metrics vs. the fp32 reference; null when not runnable here
      "latency_ms": dict | null,          # {"median": ms, "p90", "min", "runs", "num_threads", "input_shapes"}
                                          # at batch 1, TVM on a CPU also "by_threads": {"1": ms, "2": ms, ...}
                                          # (it then runs with fewer threads where fewer were faster);
                                          # null when not runnable here
      "selection": dict,                  # {"reason": str, "candidates": [...]} (auto) or {"reason": "requested"}
      "created_utc": str, "lanner_version": str
    }
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._paths import existing_folder
from .names import BACKENDS, MANIFEST_FILENAME, PRECISIONS, sha256_file

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_FILENAME",
    "BACKENDS",
    "PRECISIONS",
    "PackageError",
    "TensorSpec",
    "Manifest",
    "validate_manifest",
    "package_file",
    "sha256_file",
]

SCHEMA_VERSION = 1
FORMAT_NAME = "lanner-package"
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")


class PackageError(ValueError):
    """A package is malformed, corrupted, or cannot run on this machine."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    Thread-safe: immutable (frozen, plain Python fields).

    Attributes:
        name: tensor name, the key in ``Model.run``'s input and output dicts.
        shape: one entry per axis: an ``int`` for a fixed size, a ``str`` for a named dynamic
            axis (e.g. ``"batch"``; axes sharing a name share a size) or ``None`` for an
            anonymous dynamic axis.
        dtype: NumPy dtype name, e.g. ``"float32"``.
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PackageError(f"tensor name must be a non-empty string, got {self.name!r}")
        for dim in self.shape:
            if not (
                dim is None or isinstance(dim, str) or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0)
            ):
                raise PackageError(f"tensor {self.name!r}: each dim must be an int >= 0, a str or null, got {dim!r}")
        if self.dtype not in DTYPES:
            raise PackageError(f"tensor {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def is_dynamic(self) -> bool:
        """True when any axis is not a fixed int."""
        return any(not isinstance(d, int) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        try:
            return cls(name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"])
        except (KeyError, TypeError) as exc:
            raise PackageError(f"tensor spec must have name, shape and dtype, got {data!r}") from exc


_REQUIRED = (
    "schema_version",
    "format",
    "name",
    "task",
    "target",
    "backend",
    "precision",
    "inputs",
    "outputs",
    "preprocessing",
    "artifacts",
    "files",
    "backend_options",
    "target_info",
    "toolchain",
    "fidelity",
    "latency_ms",
    "selection",
    "created_utc",
    "lanner_version",
)
# Deepest nesting of JSON containers a manifest may have (the real ones reach 6: selection ->
# candidates -> a candidate -> fidelity -> outputs -> one output's metrics).
MAX_NESTING = 16
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _expect(key: str, ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise PackageError(f"manifest {key} must be {what}, got {value!r}")


def _object(key: str, value: Any, *, nullable: bool = False) -> None:
    _expect(
        key,
        isinstance(value, Mapping) or (nullable and value is None),
        "an object or null" if nullable else "an object",
        value,
    )


def _str_map(key: str, value: Any, check_value: Callable[[Any], bool], what: str) -> None:
    _object(key, value)
    for k, v in value.items():
        _expect(f"{key}[{k!r}]", isinstance(k, str) and check_value(v), what, v)


def _fields(key: str, value: Mapping[str, Any], checks: Mapping[str, tuple[Callable[[Any], bool], str]]) -> None:
    for name, (check, what) in checks.items():
        _expect(f"{key}.{name}", name in value and check(value[name]), what, value.get(name))


_OUTPUT_METRICS = {m: (_is_number, "a number") for m in ("cosine_min", "cosine_mean", "max_abs_error", "max_rel_error")}


def _check_fidelity(value: Any) -> None:
    _object("fidelity", value, nullable=True)
    if value is None:
        return
    _fields(
        "fidelity",
        value,
        {
            "samples": (_is_int, "an int"),
            "passed": (lambda v: isinstance(v, bool), "a bool"),
            "outputs": (lambda v: isinstance(v, Mapping) and bool(v), "a non-empty object"),
        },
    )
    for name, metrics in value["outputs"].items():
        _object(f"fidelity.outputs.{name}", metrics)
        _fields(f"fidelity.outputs.{name}", metrics, _OUTPUT_METRICS)
    top1 = value.get("top1_agreement")
    _expect("fidelity.top1_agreement", top1 is None or _is_number(top1), "a number or null", top1)


def _check_latency(key: str, value: Any) -> None:
    _object(key, value, nullable=True)
    if value is not None:
        _fields(key, value, {"median": (_is_number, "a number"), "runs": (_is_int, "an int")})


def _check_selection(value: Any) -> None:
    _object("selection", value)
    candidates = value.get("candidates", [])
    _expect(
        "selection.candidates",
        isinstance(candidates, list) and all(isinstance(c, Mapping) for c in candidates),
        "a list of objects",
        candidates,
    )
    for c in candidates:
        _fields("selection.candidates[]", c, {k: (_is_str, "a string") for k in ("backend", "precision", "status")})
        _check_latency("selection.candidates[].latency_ms", c.get("latency_ms"))


def _check_tensors(key: str, value: Any) -> None:
    _expect(
        key,
        isinstance(value, list) and bool(value) and all(isinstance(s, Mapping) for s in value),
        "a non-empty list of tensor specs",
        value,
    )
    for spec in value:
        _expect(f"{key}[].shape", isinstance(spec.get("shape"), list), "a list", spec.get("shape"))
    names = [spec.get("name") for spec in value]
    _expect(f"{key}[].name", len(set(map(str, names))) == len(names), "distinct names", names)


def _typed(check: Callable[[Any], bool], what: str) -> Callable[[str, Any], None]:
    return lambda key, value: _expect(key, check(value), what, value)


def _nullable_object(key: str, value: Any) -> None:
    _object(key, value, nullable=True)


# The schema (see the module docstring): one check per key, run on every manifest that is read.
_SCHEMA: dict[str, Callable[[str, Any], None]] = {
    "schema_version": _typed(_is_int, "an int"),
    "format": _typed(lambda v: v == FORMAT_NAME, repr(FORMAT_NAME)),
    "name": _typed(lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "task": _typed(lambda v: v is None or isinstance(v, str), "a string or null"),
    "target": _typed(lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "backend": _typed(lambda v: v in BACKENDS, f"one of {BACKENDS}"),
    "precision": _typed(lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
    "inputs": _check_tensors,
    "outputs": _check_tensors,
    "preprocessing": _nullable_object,
    "artifacts": lambda key, v: _str_map(key, v, _is_str, "a relative path"),
    "files": lambda key, v: _str_map(
        key, v, lambda h: isinstance(h, str) and bool(_SHA256_HEX.fullmatch(h)), "a sha256 hex digest"
    ),
    "backend_options": _object,
    "target_info": _object,
    "toolchain": lambda key, v: _str_map(key, v, _is_str, "a version string"),
    "fidelity": lambda key, v: _check_fidelity(v),
    "latency_ms": _check_latency,
    "selection": lambda key, v: _check_selection(v),
    "created_utc": _typed(_is_str, "a string"),
    "lanner_version": _typed(_is_str, "a string"),
}


def _nesting(value: Any) -> int:
    """Depth of nested JSON containers, without recursion (a hostile manifest may nest deeply)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (Mapping, list)):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, Mapping) else item))
    return deepest


def validate_manifest(data: Any) -> None:
    """Check a parsed ``manifest.json`` against the schema: every key present with its type.

    Args:
        data: the parsed JSON.

    Raises:
        PackageError: not an object, nested deeper than :data:`MAX_NESTING`, a key missing, or a
            value of the wrong type (the message names the key, what was expected and what arrived).
    """
    if not isinstance(data, Mapping):
        raise PackageError(f"manifest must be a JSON object, got {type(data).__name__}")
    if _nesting(data) > MAX_NESTING:
        raise PackageError(f"manifest must nest at most {MAX_NESTING} levels deep, got more")
    if data.get("format") != FORMAT_NAME:
        raise PackageError(f"manifest format must be {FORMAT_NAME!r}, got {data.get('format')!r}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise PackageError(f"manifest is missing keys {missing}")
    for key, check in _SCHEMA.items():
        check(key, data[key])


def package_file(package_dir: str | os.PathLike[str], rel: str) -> Path:
    """The path of a package file, refusing anything that could lead outside the package.

    Every component below the package folder is checked with ``lstat``: a symlink (the file
    or a folder on its way) is refused, since it may point anywhere; absolute paths and
    ``..`` are refused too, and the resolved path must stay inside the package.

    Args:
        package_dir: the package folder (it may itself be reached through a symlink).
        rel: a path relative to it, as listed in the manifest.

    Returns:
        ``package_dir / rel``.

    Raises:
        PackageError: the path is absolute, has ``..``, goes through a symlink, or resolves
            outside the package.
    """
    _check_relative(rel)
    root = Path(package_dir)
    path = root
    for part in Path(rel).parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break  # a missing file is the caller's to report
        if stat.S_ISLNK(mode):
            raise PackageError(
                f"package file {rel!r} goes through a symlink ({path.relative_to(root).as_posix()!r}); "
                "a package never reads outside itself: rebuild or copy it without links"
            )
    if not (root / rel).resolve().is_relative_to(root.resolve()):
        raise PackageError(f"package file {rel!r} resolves outside the package {str(root)!r}")
    return root / rel


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a package (see the module docstring for the schema).

    Create with :meth:`read` (from a package directory) or :meth:`from_dict`; write with
    :meth:`write`, which also records the sha256 of every file in the package.

    Thread safety: frozen, safe to share between threads (as is :class:`TensorSpec`);
    :meth:`verify` and :meth:`write` read or write the package folder, which callers must not
    change meanwhile.
    """

    name: str
    task: str | None
    target: str
    backend: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: Mapping[str, str]
    preprocessing: Mapping[str, Any] | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    target_info: Mapping[str, Any] = field(default_factory=dict)
    toolchain: Mapping[str, str] = field(default_factory=dict)
    fidelity: Mapping[str, Any] | None = None
    latency_ms: Mapping[str, Any] | None = None
    selection: Mapping[str, Any] = field(default_factory=dict)
    created_utc: str = ""
    lanner_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not _is_int(self.schema_version) or self.schema_version != SCHEMA_VERSION:
            raise PackageError(
                f"manifest schema_version {self.schema_version!r} is not supported by this lanner "
                f"(expected {SCHEMA_VERSION}); rebuild the package with this version of lanner.compile"
            )
        if self.backend not in BACKENDS:
            raise PackageError(f"manifest backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise PackageError(f"manifest precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.inputs or not self.outputs:
            raise PackageError("manifest must list at least one input and one output")
        for path in list(self.artifacts.values()) + list(self.files):
            _check_relative(path)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict (keys in schema order)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["inputs"] = [s.to_dict() for s in self.inputs]
        data["outputs"] = [s.to_dict() for s in self.outputs]
        data["format"] = FORMAT_NAME
        return {key: _plain(data[key]) for key in _REQUIRED}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse a manifest dict, validated against the schema (:func:`validate_manifest`).

        Raises:
            PackageError: a key is missing, the schema version or format is unknown, or a value
                is malformed.
        """
        validate_manifest(data)
        kwargs = {k: data[k] for k in _REQUIRED if k != "format"}
        kwargs["inputs"] = tuple(TensorSpec.from_dict(s) for s in data["inputs"])
        kwargs["outputs"] = tuple(TensorSpec.from_dict(s) for s in data["outputs"])
        return cls(**kwargs)

    @classmethod
    def read(cls, package_dir: str | os.PathLike[str]) -> Manifest:
        """Read ``package_dir/manifest.json`` (no checksum verification; see :meth:`verify`).

        Raises:
            FileNotFoundError: the directory or its manifest does not exist.
            PackageError: the manifest is a symlink, is not valid JSON or does not follow the schema.
        """
        existing_folder(package_dir, "package directory")
        path = package_file(package_dir, MANIFEST_FILENAME)
        if not path.is_file():
            raise FileNotFoundError(f"{str(package_dir)!r} is not a lanner package: no {MANIFEST_FILENAME}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PackageError(f"{path} is not valid JSON: {exc}") from exc
        except RecursionError:
            raise PackageError(f"{path} nests deeper than a manifest may ({MAX_NESTING} levels)") from None
        return cls.from_dict(data)

    def write(self, package_dir: str | os.PathLike[str]) -> Manifest:
        """Hash every file in ``package_dir`` and write ``manifest.json`` there.

        Returns:
            The manifest with ``files`` filled in (the one written).
        """
        root = Path(package_dir)
        files = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise PackageError(f"{rel!r} in {root} is a symlink; a package holds plain files only")
            if path.is_file() and rel != MANIFEST_FILENAME:
                files[rel] = sha256_file(path)
        for role, rel in self.artifacts.items():
            if rel not in files:
                raise PackageError(f"artifact {role!r} -> {rel!r} is not in {root}")
        final = dataclasses.replace(self, files=files)
        (root / MANIFEST_FILENAME).write_text(json.dumps(final.to_dict(), indent=2) + "\n", encoding="utf-8")
        return final

    def verify(self, package_dir: str | os.PathLike[str]) -> None:
        """Check that every listed file exists with its recorded sha256 and every artifact is listed.

        No file is read through a symlink (see :func:`package_file`), so no checksum of a file
        outside the package is ever computed or printed.

        Raises:
            PackageError: a file is missing, altered, reached through a symlink, or an artifact is
                not covered by a checksum.
        """
        root = Path(package_dir)
        for role, rel in self.artifacts.items():
            if rel not in self.files:
                raise PackageError(f"artifact {role!r} -> {rel!r} has no checksum in the manifest")
        for rel, expected in self.files.items():
            path = package_file(root, rel)
            if not path.is_file():
                raise PackageError(f"package file {rel!r} listed in the manifest is missing from {root}")
            actual = sha256_file(path)
            if actual != expected:
                raise PackageError(
                    f"checksum mismatch for {rel!r}: manifest has sha256 {expected[:16]}..., file has "
                    f"{actual[:16]}...; the package is corrupted or was modified after it was built"
                )

    def artifact_path(self, package_dir: str | os.PathLike[str], role: str) -> Path:
        """Path of the artifact with this role (e.g. ``"model"``).

        Raises:
            PackageError: no such artifact, or its path leads outside the package (a symlink).
        """
        if role not in self.artifacts:
            raise PackageError(f"package has no {role!r} artifact; it has {sorted(self.artifacts)}")
        return package_file(package_dir, self.artifacts[role])

    def unlisted_files(self, package_dir: str | os.PathLike[str]) -> list[str]:
        """Files and links in the package that the manifest does not list (``manifest.json`` aside).

        Returns:
            Their paths relative to the package, sorted.
        """
        root = Path(package_dir)
        present = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() or not p.is_dir())
        return sorted(rel for rel in present if rel != MANIFEST_FILENAME and rel not in self.files)


def _check_relative(path: str) -> None:
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise PackageError(f"package paths must be relative and inside the package, got {path!r}")


def _plain(value: Any) -> Any:
    """Turn mappings/tuples (and NumPy scalars) into JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
