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
      "latency_ms": dict | null,          # {"batch1_median": float, ...}; null when not runnable here
      "selection": dict,                  # {"reason": str, "candidates": [...]} (auto) or {"reason": "requested"}
      "created_utc": str, "lanner_version": str
    }
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_FILENAME",
    "BACKENDS",
    "PRECISIONS",
    "PackageError",
    "TensorSpec",
    "Manifest",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
FORMAT_NAME = "lanner-package"
BACKENDS = ("openvino", "onnxruntime", "tvm")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")


class PackageError(ValueError):
    """A package is malformed, corrupted, or cannot run on this machine."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

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
            if not (dim is None or isinstance(dim, str) or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0)):
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
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        try:
            return cls(name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"])
        except (KeyError, TypeError) as exc:
            raise PackageError(f"tensor spec must have name, shape and dtype, got {data!r}") from exc


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_REQUIRED = (
    "schema_version", "format", "name", "task", "target", "backend", "precision", "inputs", "outputs",
    "preprocessing", "artifacts", "files", "backend_options", "target_info", "toolchain", "fidelity",
    "latency_ms", "selection", "created_utc", "lanner_version",
)


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a package (see the module docstring for the schema).

    Create with :meth:`read` (from a package directory) or :meth:`from_dict`; write with
    :meth:`write`, which also records the sha256 of every file in the package.
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
        if self.schema_version != SCHEMA_VERSION:
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
    def from_dict(cls, data: Mapping[str, Any]) -> "Manifest":
        """Parse a manifest dict.

        Raises:
            PackageError: a key is missing, the schema version or format is unknown, or a value
                is malformed.
        """
        if not isinstance(data, Mapping):
            raise PackageError(f"manifest must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_NAME:
            raise PackageError(f"manifest format must be {FORMAT_NAME!r}, got {data.get('format')!r}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise PackageError(f"manifest is missing keys {missing}")
        kwargs = {k: data[k] for k in _REQUIRED if k != "format"}
        kwargs["inputs"] = tuple(TensorSpec.from_dict(s) for s in data["inputs"])
        kwargs["outputs"] = tuple(TensorSpec.from_dict(s) for s in data["outputs"])
        return cls(**kwargs)

    @classmethod
    def read(cls, package_dir: str | os.PathLike[str]) -> "Manifest":
        """Read ``package_dir/manifest.json`` (no checksum verification; see :meth:`verify`).

        Raises:
            FileNotFoundError: the directory or its manifest does not exist.
            PackageError: the manifest is not valid JSON or does not follow the schema.
        """
        path = Path(package_dir) / MANIFEST_FILENAME
        if not Path(package_dir).is_dir():
            raise FileNotFoundError(f"package directory {str(package_dir)!r} does not exist")
        if not path.is_file():
            raise FileNotFoundError(f"{str(package_dir)!r} is not a lanner package: no {MANIFEST_FILENAME}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PackageError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def write(self, package_dir: str | os.PathLike[str]) -> "Manifest":
        """Hash every file in ``package_dir`` and write ``manifest.json`` there.

        Returns:
            The manifest with ``files`` filled in (the one written).
        """
        root = Path(package_dir)
        files = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
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

        Raises:
            PackageError: a file is missing, altered, or an artifact is not covered by a checksum.
        """
        root = Path(package_dir)
        for role, rel in self.artifacts.items():
            if rel not in self.files:
                raise PackageError(f"artifact {role!r} -> {rel!r} has no checksum in the manifest")
        for rel, expected in self.files.items():
            path = root / rel
            if not path.is_file():
                raise PackageError(f"package file {rel!r} listed in the manifest is missing from {root}")
            actual = sha256_file(path)
            if actual != expected:
                raise PackageError(
                    f"checksum mismatch for {rel!r}: manifest has sha256 {expected[:16]}..., file has "
                    f"{actual[:16]}...; the package is corrupted or was modified after it was built"
                )

    def artifact_path(self, package_dir: str | os.PathLike[str], role: str) -> Path:
        """Absolute path of the artifact with this role (e.g. ``"model"``)."""
        if role not in self.artifacts:
            raise PackageError(f"package has no {role!r} artifact; it has {sorted(self.artifacts)}")
        return Path(package_dir) / self.artifacts[role]


def _check_relative(path: str) -> None:
    p = Path(path)
    if not isinstance(path, str) or p.is_absolute() or ".." in p.parts:
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
