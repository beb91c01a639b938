"""Model manifests: the metadata file beside a model, extended so that loading can verify the model (issue 15).

`save_with_manifest` saves a model in one of the course's formats and writes `model.ext.meta.json` (the file of
`course_lib.serialization.metadata`, with its fields kept) holding also: the file's sha256, the versions of the
libraries that format needs, the input schema, and a reference input with the output that loading the saved file
gives. `load_verified` checks all of it, in this order, and raises one exception class per check:

1. `ManifestMissingError`: no manifest beside the file.
2. `ManifestInvalidError`: not JSON, a field missing or of the wrong type.
3. `ChecksumMismatchError`: the file's sha256 is not the recorded one (the file changed).
4. `LibraryVersionError`: a recorded library is not installed or its compatible release differs (semantic
   versioning: the major version; for 0.x the minor one). Other differences load and are listed in `version_notes`.
5. `InputSchemaError`: the reference input does not fit the schema (width, numbers that fit float32).
6. `ReferenceOutputError`: the loaded model's output on the reference input is farther than atol from the recorded one.

The checks are independent: a file swapped together with its sha256 still fails check 6. The manifest guards against
accidents (a changed file, a changed environment), not against an attacker, who can rewrite the manifest as well.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from packaging.version import InvalidVersion, Version

from course_lib.serialization.formats import FORMATS, Format, Predictor, get_format, sklearn_predictor, torch_predictor
from course_lib.serialization.metadata import library_versions, metadata_path, model_metadata, save_metadata

MANIFEST_VERSION = 1
INPUT_DTYPE = "float32"  # what every Predictor takes
DEFAULT_ATOL = 1e-5
FLOAT32_MAX = float(np.finfo(np.float32).max)

# The libraries a file of each format needs to be read back (Python's version is always recorded too).
# scikit-learn's pickles hold numpy arrays, so numpy counts for them; PyTorch and ONNX files do not hold numpy objects.
FORMAT_LIBRARIES: dict[str, tuple[str, ...]] = {
    "pickle": ("scikit-learn", "numpy"),
    "joblib": ("scikit-learn", "numpy", "joblib"),
    "joblib (compress=3)": ("scikit-learn", "numpy", "joblib"),
    "skops": ("scikit-learn", "numpy", "skops"),
    "ONNX (skl2onnx)": ("onnxruntime",),
    "state_dict": ("torch",),
    "TorchScript": ("torch",),
    "torch.export": ("torch",),
    "ONNX (torch.onnx)": ("onnxruntime",),
}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest check failed; the message names the check, the file, expected vs found, and what to do."""

    check: ClassVar[str] = "manifest"

    def __init__(self, path: str | Path | None, detail: str, advice: str) -> None:
        self.path = None if path is None else Path(path)
        self.detail = detail
        where = "" if path is None else f" for {path}"
        super().__init__(f"{self.check} check failed{where}: {detail}. {advice}")


class ManifestMissingError(ManifestError):
    """No manifest file beside the model."""

    check = "manifest presence"


class ManifestInvalidError(ManifestError):
    """The manifest is not JSON, or a field is missing or of the wrong type."""

    check = "manifest format"


class ChecksumMismatchError(ManifestError):
    """The model file's sha256 differs from the recorded one."""

    check = "checksum"


class LibraryVersionError(ManifestError):
    """A recorded library is missing, or its installed version is not compatible with the recorded one."""

    check = "library version"


class InputSchemaError(ManifestError):
    """Rows (the reference input, or live rows) do not fit the input schema."""

    check = "input schema"


class ReferenceOutputError(ManifestError):
    """The loaded model's output on the reference input differs from the recorded output beyond atol."""

    check = "reference output"


@dataclass(frozen=True)
class Manifest:
    """A model's manifest as saved beside it; version_notes is filled by load_verified and is not saved."""

    name: str
    version: str
    format: str
    sha256: str
    versions: dict[str, str]
    feature_names: list[str]
    class_names: list[str]
    input_dtype: str
    input_shape: list[int | None]
    reference_input: list[list[float]]
    reference_output: list[list[float]]
    atol: float
    trained_at: str
    metrics: dict[str, float]
    version_notes: tuple[str, ...] = ()

    @property
    def input_schema(self) -> dict[str, Any]:
        """The input schema: feature names, dtype and shape (None: any number of rows)."""
        return {"feature_names": list(self.feature_names), "dtype": self.input_dtype, "shape": list(self.input_shape)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout: metadata.model_metadata's fields plus the manifest's (feature names stored once)."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "sha256": self.sha256,
            "versions": dict(self.versions),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "trained_at": self.trained_at,
            "metrics": dict(self.metrics),
            "input_schema": {"dtype": self.input_dtype, "shape": list(self.input_shape)},
            "reference": {"input": self.reference_input, "output": self.reference_output, "atol": self.atol},
        }

    def to_json(self) -> str:
        """The manifest as the JSON text written beside the model."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> Manifest:
        """Build a Manifest from its JSON layout; ManifestInvalidError names every missing or mistyped field."""
        problems = _layout_problems(data)
        if problems:
            raise ManifestInvalidError(
                source,
                "; ".join(problems),
                "The manifest was edited or written by other code: save the model again with save_with_manifest",
            )
        schema, reference = data["input_schema"], data["reference"]
        return cls(
            name=data["name"],
            version=data["version"],
            format=data["format"],
            sha256=data["sha256"],
            versions=dict(data["versions"]),
            feature_names=list(data["feature_names"]),
            class_names=list(data["class_names"]),
            input_dtype=schema["dtype"],
            input_shape=list(schema["shape"]),
            reference_input=reference["input"],
            reference_output=reference["output"],
            atol=float(reference["atol"]),
            trained_at=data["trained_at"],
            metrics=dict(data["metrics"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str | Path | None = None) -> Manifest:
        """Parse a manifest's JSON text; ManifestInvalidError when it is not JSON or its layout is wrong."""
        try:
            data = json.loads(text)
        except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
            raise ManifestInvalidError(
                source,
                f"expected JSON, found content that is not JSON ({error})",
                "Restore the manifest from where the model came from, or save the model again with save_with_manifest",
            ) from None
        return cls.from_dict(data, source)

    def verify_input(self, rows: Any, source: str | Path | None = None) -> np.ndarray:
        """rows as a float32 array (n, width) after checking them against the input schema (InputSchemaError)."""
        expected_shape = [None, len(self.feature_names)]
        if self.input_dtype != INPUT_DTYPE:
            problem = f"expected dtype {INPUT_DTYPE!r} in the schema, found {self.input_dtype!r}"
        elif self.input_shape != expected_shape:
            problem = f"expected shape {expected_shape} (a column per feature name), found {self.input_shape}"
        else:
            return verify_rows(rows, self.feature_names, source)
        raise InputSchemaError(source, problem, "The manifest's schema was edited: save the model again")


def verify_rows(rows: Any, feature_names: list[str], source: str | Path | None = None) -> np.ndarray:
    """rows as a float32 array (n, len(feature_names)): numbers within float32's range, else InputSchemaError."""
    problem = _rows_problem(rows, feature_names)
    if problem:
        raise InputSchemaError(source, problem, "Send rows of numbers in the order of the schema's feature names")
    return np.ascontiguousarray(rows, dtype=np.float32)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file as hex, read in chunks (a model file need not fit in memory twice)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def compatible_release(version: str) -> tuple[int, ...]:
    """The part of a version that must stay the same: the major version, or (0, minor) for 0.x (semantic versioning)."""
    release = Version(version).release
    return release[:2] if release[0] == 0 else release[:1]


def version_problems(saved: dict[str, str], installed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(refusals, notes): libraries missing or of another compatible release, and those differing only within one."""
    refusals, notes = [], []
    for name, version in saved.items():
        found = installed.get(name)
        if found is None:
            refusals.append(f"{name}: expected {version}, found not installed")
        elif compatible_release(found) != compatible_release(version):
            refusals.append(f"{name}: expected {version}, found {found} (not {release_series(version)})")
        elif Version(found) != Version(version):
            notes.append(
                f"{name}: saved with {version}, loaded with {found} (both {release_series(version)}: accepted)"
            )
    return refusals, notes


def release_series(version: str) -> str:
    """The compatible releases of version, as a reader writes them: 2.14.1 → "2.x", 0.16.0 → "0.16.x"."""
    return ".".join(map(str, compatible_release(version))) + ".x"


def save_with_manifest(
    model: Any,
    path: str | Path,
    format_name: str,
    *,
    name: str,
    version: str,
    feature_names: list[str],
    class_names: list[str],
    reference_input: Any,
    metrics: dict[str, float] | None = None,
    atol: float = DEFAULT_ATOL,
    trained_at: str | None = None,
) -> Manifest:
    """Save model with the format format_name at path and write its manifest beside it; return the manifest.

    The expected output is what loading the saved file gives on reference_input; a file whose output is already
    farther than atol from the model in memory is refused (ValueError) rather than certified.
    """
    fmt, path = get_format(format_name), Path(path)
    X = verify_rows(reference_input, list(feature_names))  # before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.save(model, path)
    expected = np.asarray(fmt.load(path)(X))
    in_memory = np.asarray(_original_predictor(fmt, model)(X))
    gap = _largest_difference(expected, in_memory)
    if gap is None or gap[0] > atol:
        found = (
            f"output shape {expected.shape}, the model's {in_memory.shape}"
            if gap is None
            else (f"largest difference {gap[0]:.3g} > atol {atol:g}")
        )
        raise ValueError(
            f"the saved {fmt.name} file does not reproduce the model: {found}; choose another format or a larger atol"
        )
    libraries = FORMAT_LIBRARIES[fmt.name]
    metadata = model_metadata(feature_names, class_names, metrics or {}, trained_at, libraries=libraries)
    manifest = Manifest(
        name=name,
        version=version,
        format=fmt.name,
        sha256=file_sha256(path),
        versions=metadata["versions"],
        feature_names=metadata["feature_names"],
        class_names=metadata["class_names"],
        input_dtype=INPUT_DTYPE,
        input_shape=[None, len(feature_names)],
        reference_input=_json_table(X),
        reference_output=_json_table(expected),
        atol=float(atol),
        trained_at=metadata["trained_at"],
        metrics=metadata["metrics"],
    )
    save_metadata(path, manifest.to_dict())
    return manifest


def read_manifest(path: str | Path) -> Manifest:
    """The manifest beside the model file at path (ManifestMissingError, ManifestInvalidError)."""
    meta = metadata_path(path)
    if not meta.is_file():
        raise ManifestMissingError(
            path,
            f"expected a manifest at {meta}, found none",
            "Copy the .meta.json that came with the model beside it, or save the model again with save_with_manifest",
        )
    return Manifest.from_json(meta.read_bytes(), path)


def load_verified(
    path: str | Path, *, installed: dict[str, str] | None = None, feature_names: list[str] | None = None
) -> tuple[Predictor, Manifest]:
    """Load the model at path after verifying its manifest; the manifest's version_notes list accepted differences.

    installed: the environment's versions ({name: version}, Python's under "python"); default: what is installed.
    feature_names: the columns the caller will send, in its order; the manifest's must be the same (else
    InputSchemaError), so a model trained on another column order is never served.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    manifest = read_manifest(path)
    found = file_sha256(path)
    if found != manifest.sha256:
        raise ChecksumMismatchError(
            path,
            f"expected sha256 {manifest.sha256}, found {found}",
            "The file changed after it was saved: use the original file, or save the model again with its manifest",
        )
    if installed is None:
        installed = library_versions(tuple(name for name in manifest.versions if name != "python"))
    refusals, notes = version_problems(manifest.versions, installed)
    if refusals:
        raise LibraryVersionError(
            path,
            "; ".join(refusals),
            "Install the recorded versions (make lab installs the lock), or save the model again in this environment",
        )
    if feature_names is not None and list(feature_names) != manifest.feature_names:
        raise InputSchemaError(
            path,
            f"expected the caller's features {list(feature_names)}, found {manifest.feature_names}",
            "Send the columns in the model's order, or load the model that was trained on yours",
        )
    X = manifest.verify_input(manifest.reference_input, path)
    predictor = get_format(manifest.format).load(path)
    got = np.asarray(predictor(X))
    expected = np.asarray(manifest.reference_output, dtype=np.float64)
    gap = _largest_difference(got, expected)
    if gap is None:
        raise ReferenceOutputError(
            path,
            f"expected output shape {expected.shape}, found {got.shape}",
            "The file loads but is another model: use the original file, or save the model again with its manifest",
        )
    difference, (row, column) = gap
    if not difference <= manifest.atol:
        raise ReferenceOutputError(
            path,
            f"largest difference {difference:.3g} > atol {manifest.atol:g} at row {row}, column {column}: "
            f"expected {expected[row, column]:.6g}, found {got[row, column]:.6g}",
            "The file loads but computes something else: use the original file and library versions, "
            "or save the model again with its manifest",
        )
    return predictor, replace(manifest, version_notes=tuple(notes))


def _original_predictor(fmt: Format, model: Any) -> Predictor:
    """The in-memory model's scores, as the format's family computes them."""
    return sklearn_predictor(model) if fmt.family == "sklearn" else torch_predictor(model.eval())


def _json_table(array: np.ndarray) -> list[list[float]]:
    """A 2-D array as JSON lists; float32 values by their shortest repr (6.1, not 6.099999904632568), which casts
    back to the same float32."""
    if array.dtype == np.float32:
        return [[float(str(value)) for value in row] for row in array]
    return array.tolist()


def _largest_difference(got: np.ndarray, expected: np.ndarray) -> tuple[float, tuple[int, int]] | None:
    """The largest absolute difference and where (a NaN wins: np.argmax stops at it); None when the shapes differ."""
    if got.shape != expected.shape or got.ndim != 2 or got.size == 0:
        return None
    expected = expected.astype(got.dtype) if got.dtype.kind == "f" else expected  # stored as got's float type
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    row, column = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[row, column]), (int(row), int(column))


def _rows_problem(rows: Any, feature_names: list[str]) -> str | None:
    """What is wrong with rows as float32 input with one column per feature name (None: nothing)."""
    width = len(feature_names)
    try:
        array = np.asarray(rows)
    except ValueError:  # ragged lists (NumPy 2 refuses them)
        return "expected a table of rows of equal length, found rows of different lengths"
    if array.ndim != 2 or array.shape[0] == 0:
        return f"expected a 2-D table of rows with {width} columns, found shape {list(array.shape)}"
    if array.shape[1] != width:
        return f"expected {width} columns ({', '.join(feature_names)}), found {array.shape[1]}"
    if array.dtype.kind not in "iuf":  # bool, str and object arrays are not measurements
        return f"expected numbers (dtype {INPUT_DTYPE}), found dtype {array.dtype}"
    if not isinstance(rows, np.ndarray) and any(isinstance(value, bool) for row in rows for value in row):
        return f"expected numbers (dtype {INPUT_DTYPE}), found true/false"  # NumPy would have read them as 1.0 / 0.0
    values = array.astype(np.float64)
    outside = values[~(np.abs(values) <= FLOAT32_MAX)]  # NaN and infinity fail the comparison too
    if outside.size:
        return f"expected finite numbers within {INPUT_DTYPE}'s range, found {outside[0]}"
    return None


def _layout_problems(data: Any) -> list[str]:
    """Every missing or mistyped field of a manifest's JSON layout (empty: the layout is right)."""
    if not isinstance(data, dict):
        return [f"expected a JSON object, found {type(data).__name__}"]
    if data.get("manifest_version") != MANIFEST_VERSION:  # a plain metadata file has none
        return [f"manifest_version: expected {MANIFEST_VERSION}, found {data.get('manifest_version')!r}"]
    fields = {
        "name": str,
        "version": str,
        "format": str,
        "sha256": str,
        "versions": dict,
        "feature_names": list,
        "class_names": list,
        "trained_at": str,
        "metrics": dict,
        "input_schema": dict,
        "reference": dict,
    }
    problems = [_field_problem(key, data, kind) for key, kind in fields.items()]
    nested = {("input_schema", "dtype"): str, ("input_schema", "shape"): list, ("reference", "input"): list}
    nested |= {("reference", "output"): list, ("reference", "atol"): (int, float)}
    problems += [
        _field_problem(f"{outer}.{inner}", data[outer], kind, inner)
        for (outer, inner), kind in nested.items()
        if isinstance(data.get(outer), dict)
    ]
    problems = [p for p in problems if p]
    if problems:
        return problems
    return [p for p in _value_problems(data) if p]


def _field_problem(label: str, data: dict, kind: type | tuple[type, ...], key: str | None = None) -> str | None:
    """'label: missing' or 'label: expected type, found type' (None when the field is there with its type)."""
    key = label if key is None else key
    if key not in data:
        return f"{label}: expected a value, found none"
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        wanted = kind.__name__ if isinstance(kind, type) else "number"
        return f"{label}: expected {wanted}, found {type(value).__name__}"
    return None


def _value_problems(data: dict) -> list[str | None]:
    """Problems of field values once every field has its type: sha256, format, versions, atol, output, names."""
    known = [f.name for f in FORMATS]
    problems: list[str | None] = [
        None if _SHA256.match(data["sha256"]) else f"sha256: expected 64 hex digits, found {data['sha256']!r}",
        None if data["format"] in known else f"format: expected one of {known}, found {data['format']!r}",
        None
        if math.isfinite(data["reference"]["atol"]) and data["reference"]["atol"] >= 0
        else f"reference.atol: expected a number >= 0, found {data['reference']['atol']!r}",
        None
        if all(isinstance(n, str) for n in data["feature_names"] + data["class_names"])
        else "feature_names / class_names: expected lists of strings",
    ]
    for library, version in data["versions"].items():
        try:
            Version(version)
        except (InvalidVersion, TypeError):
            problems.append(f"versions.{library}: expected a version number, found {version!r}")
    try:
        output = np.asarray(data["reference"]["output"], dtype=np.float64)
        if output.ndim != 2:
            problems.append(f"reference.output: expected a table of numbers, found shape {list(output.shape)}")
    except (TypeError, ValueError):
        problems.append("reference.output: expected a table of numbers, found other values")
    return problems
