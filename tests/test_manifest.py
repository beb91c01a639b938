"""Model manifests: a round trip per format, and every tampering caught by its own check, class and message — also
when the earlier checks were made to pass (a swapped file with its sha256 "fixed" still fails the reference check)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from packaging.version import Version

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_split
from course_lib.models import train_iris_forest, train_simple_nn
from course_lib.serialization import FORMATS, get_format, library_versions, read_metadata, save_metadata
from course_lib.serialization.manifest import (
    FORMAT_LIBRARIES,
    ChecksumMismatchError,
    InputSchemaError,
    LibraryVersionError,
    Manifest,
    ManifestError,
    ManifestInvalidError,
    ManifestMissingError,
    ReferenceOutputError,
    compatible_release,
    file_sha256,
    load_verified,
    save_with_manifest,
)
from course_lib.serialization.metadata import metadata_path, model_metadata

SPLIT = iris_split()
REFERENCE = SPLIT.X_test  # 30 rows: the reference input saved in the manifest
LIVE = SPLIT.X_train  # other rows, for the round trip
CHECKS = [
    ManifestMissingError,
    ManifestInvalidError,
    ChecksumMismatchError,
    LibraryVersionError,
    InputSchemaError,
    ReferenceOutputError,
]


@pytest.fixture(scope="module")
def other_forest():
    """Another valid iris forest (another seed): what a swapped file holds."""
    return train_iris_forest(random_state=7)[0]


@pytest.fixture(scope="module")
def other_net():
    """Another valid SimpleNN (another seed; 60 epochs are enough to be a working network and train in a fraction)."""
    return train_simple_nn(seed=1, epochs=60)[0]


def save(model: Any, folder: Path, format_name: str, **options: Any) -> Path:
    """Save model with its manifest under folder; the model file's path."""
    path = folder / f"model{get_format(format_name).suffix}"
    save_with_manifest(
        model,
        path,
        format_name,
        name="iris",
        version="1.0.0",
        feature_names=IRIS_FEATURES,
        class_names=IRIS_CLASSES,
        reference_input=options.pop("reference_input", REFERENCE),
        metrics={"accuracy": 1.0},
        trained_at="2026-01-01T00:00:00+00:00",
        **options,
    )
    return path


def edit_manifest(path: Path, change: Callable[[dict], Any]) -> None:
    """Apply change to the manifest's JSON beside path and write it back."""
    meta = metadata_path(path)
    data = json.loads(meta.read_text(encoding="utf-8"))
    change(data)
    meta.write_text(json.dumps(data), encoding="utf-8")


def scores(model: Any, X: np.ndarray) -> np.ndarray:
    """The in-memory model's scores (probabilities or logits)."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(X)).numpy()


def next_minor(version: str) -> str:
    """The same major version with the next minor one: 2.14.1 → 2.15.0."""
    major, minor = Version(version).release[:2]
    return f"{major}.{minor + 1}.0"


def next_major(version: str) -> str:
    """The next major version: 2.14.1 → 3.0.0."""
    return f"{Version(version).major + 1}.0.0"


def raised(error_class: type[ManifestError], path: Path, **options: Any) -> str:
    """load_verified(path) must raise exactly error_class, whose message names its check and the file; the message."""
    with pytest.raises(ManifestError) as info:
        load_verified(path, **options)
    assert type(info.value) is error_class, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message.startswith(f"{error_class.check} check failed for {path}: "), message
    return message


# --- round trip -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format_name, model_name", [("skops", "forest"), ("joblib", "forest"), ("state_dict", "net")])
def test_round_trip_loads_a_predictor_equal_to_the_model(format_name, model_name, request, tmp_path: Path):
    model = request.getfixturevalue(model_name)
    path = save(model, tmp_path, format_name)
    predictor, manifest = load_verified(path)
    np.testing.assert_array_equal(predictor(LIVE), scores(model, LIVE))
    assert manifest.version_notes == ()
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert manifest.versions == library_versions(FORMAT_LIBRARIES[format_name])
    assert set(manifest.versions) == {"python", *FORMAT_LIBRARIES[format_name]}
    assert manifest.input_schema == {"feature_names": IRIS_FEATURES, "dtype": "float32", "shape": [None, 4]}
    assert (manifest.name, manifest.version, manifest.format) == ("iris", "1.0.0", format_name)
    assert manifest.trained_at == "2026-01-01T00:00:00+00:00" and manifest.metrics == {"accuracy": 1.0}
    np.testing.assert_array_equal(np.asarray(manifest.reference_input, dtype=np.float32), REFERENCE)
    np.testing.assert_array_equal(
        np.asarray(manifest.reference_output, dtype=predictor(REFERENCE).dtype), scores(model, REFERENCE)
    )
    # One file beside the model: the metadata file, still readable as metadata, holds the manifest.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".meta.json"])
    meta = read_metadata(path)
    assert meta["metrics"] == {"accuracy": 1.0} and meta["feature_names"] == IRIS_FEATURES
    assert Manifest.from_json(metadata_path(path).read_text(encoding="utf-8")) == manifest
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_every_format_names_the_libraries_it_needs():
    assert set(FORMAT_LIBRARIES) == {fmt.name for fmt in FORMATS}
    assert FORMAT_LIBRARIES["state_dict"] == ("torch",)
    assert {"scikit-learn", "numpy"} <= set(FORMAT_LIBRARIES["skops"])
    assert FORMAT_LIBRARIES["ONNX (torch.onnx)"] == ("onnxruntime",)


def test_reference_output_is_what_loading_the_file_gives(forest, tmp_path: Path):
    # ONNX computes the forest in float32: the file's output, not the model's, is what loading will be compared with.
    path = save(forest, tmp_path, "ONNX (skl2onnx)")
    loaded = get_format("ONNX (skl2onnx)").load(path)(REFERENCE)
    manifest = load_verified(path)[1]
    assert not np.array_equal(loaded, forest.predict_proba(REFERENCE))  # the two differ, so the test tells them apart
    np.testing.assert_array_equal(np.asarray(manifest.reference_output, dtype=np.float32), loaded)
    assert manifest.versions == library_versions(("onnxruntime",))


def test_float32_outputs_survive_json_exactly(net, tmp_path: Path):
    # atol=0: the stored float32 logits must read back as the very same float32 values.
    path = save(net, tmp_path, "state_dict", atol=0.0)
    predictor, manifest = load_verified(path)
    assert manifest.atol == 0.0
    assert json.loads(metadata_path(path).read_text())["reference"]["input"][0] == [6.1, 2.8, 4.7, 1.2]


def test_save_refuses_a_file_that_does_not_reproduce_the_model(forest, tmp_path: Path):
    with pytest.raises(ValueError, match=r"does not reproduce the model: largest difference .* > atol 1e-09"):
        save(forest, tmp_path, "ONNX (skl2onnx)", atol=1e-9)
    assert not metadata_path(tmp_path / "model.onnx").exists()


def test_save_checks_the_reference_input_before_writing(forest, tmp_path: Path):
    with pytest.raises(InputSchemaError, match=r"^input schema check failed: expected 4 columns .* found 3"):
        save(forest, tmp_path, "joblib", reference_input=REFERENCE[:, :3])
    assert list(tmp_path.iterdir()) == []


def test_a_missing_model_file_is_not_a_manifest_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_verified(tmp_path / "model.skops")


# --- each tampering, its own check ------------------------------------------------------------------------


def test_one_changed_byte_fails_the_checksum(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    expected = file_sha256(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    message = raised(ChecksumMismatchError, path)
    assert f"expected sha256 {expected}, found {file_sha256(path)}" in message


def test_an_edited_sha256_fails_the_checksum(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    edit_manifest(path, lambda m: m.update(sha256="0" * 64))
    assert f"expected sha256 {'0' * 64}, found {file_sha256(path)}" in raised(ChecksumMismatchError, path)


@pytest.mark.parametrize("format_name, model_name", [("skops", "forest"), ("state_dict", "net")])
def test_another_valid_model_fails_the_checksum(format_name, model_name, request, tmp_path: Path):
    model = request.getfixturevalue(model_name)
    other = request.getfixturevalue(f"other_{model_name}")
    path = save(model, tmp_path, format_name)
    get_format(format_name).save(other, path)
    get_format(format_name).load(path)  # a file that loads fine: only the checksum tells
    raised(ChecksumMismatchError, path)


@pytest.mark.parametrize("format_name, model_name", [("skops", "forest"), ("state_dict", "net")])
def test_another_model_with_a_fixed_checksum_fails_the_reference_output(format_name, model_name, request, tmp_path):
    # The checks are independent: whoever re-saves another model and updates the sha256 is caught one check later.
    model = request.getfixturevalue(model_name)
    other = request.getfixturevalue(f"other_{model_name}")
    path = save(model, tmp_path, format_name)
    get_format(format_name).save(other, path)
    edit_manifest(path, lambda m: m.update(sha256=file_sha256(path)))
    message = raised(ReferenceOutputError, path)
    largest = np.abs(scores(other, REFERENCE) - scores(model, REFERENCE)).max()
    assert f"largest difference {largest:.3g} > atol 1e-05" in message, message


def test_an_edited_reference_output_fails_with_its_place_and_the_largest_difference(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    original = forest.predict_proba(REFERENCE)
    edit_manifest(path, lambda m: m["reference"]["output"][7].__setitem__(1, original[7, 1] + 0.5))
    message = raised(ReferenceOutputError, path)
    assert "largest difference 0.5 > atol 1e-05 at row 7, column 1" in message
    assert f"expected {original[7, 1] + 0.5:.6g}, found {original[7, 1]:.6g}" in message


def test_a_nan_in_the_reference_output_is_a_difference(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    edit_manifest(path, lambda m: m["reference"]["output"][3].__setitem__(2, float("nan")))  # json writes NaN
    assert "largest difference nan > atol 1e-05 at row 3, column 2" in raised(ReferenceOutputError, path)


@pytest.mark.parametrize("factor, passes", [(0.9, True), (1.1, False), (-1.1, False)])
def test_the_reference_output_may_differ_by_atol_and_no_more(factor, passes, forest, tmp_path: Path):
    atol = 0.01
    path = save(forest, tmp_path, "joblib", atol=atol)
    shifted = forest.predict_proba(REFERENCE) + factor * atol
    edit_manifest(path, lambda m: m["reference"].update(output=shifted.tolist()))
    if passes:
        load_verified(path)
    else:
        raised(ReferenceOutputError, path)


def test_a_reference_output_of_another_shape_fails_the_reference_output(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    edit_manifest(path, lambda m: m["reference"].update(output=[row[:2] for row in m["reference"]["output"]]))
    assert "expected output shape (30, 2), found (30, 3)" in raised(ReferenceOutputError, path)


def test_a_changed_major_torch_version_is_refused(net, tmp_path: Path):
    path = save(net, tmp_path, "state_dict")
    installed = library_versions()["torch"]
    saved_later = next_major(installed)
    edit_manifest(path, lambda m: m["versions"].update(torch=saved_later))
    message = raised(LibraryVersionError, path)
    assert f"torch: expected {saved_later}, found {installed} (not {Version(saved_later).major}.x)" in message


def test_a_newer_major_version_installed_is_refused(net, tmp_path: Path):
    path = save(net, tmp_path, "state_dict")
    saved = library_versions()["torch"]
    newer = dict(library_versions(), torch=next_major(saved))
    assert f"torch: expected {saved}, found {newer['torch']}" in raised(LibraryVersionError, path, installed=newer)


def test_a_changed_minor_version_loads_and_is_noted(net, tmp_path: Path):
    path = save(net, tmp_path, "state_dict")
    current = library_versions()
    edit_manifest(path, lambda m: m["versions"].update(torch=next_minor(current["torch"])))
    predictor, manifest = load_verified(path)
    saved = next_minor(current["torch"])
    assert manifest.version_notes == (
        f"torch: saved with {saved}, loaded with {current['torch']} (both {Version(saved).major}.x: accepted)",
    )
    np.testing.assert_array_equal(predictor(LIVE), scores(net, LIVE))
    # Python is checked like the libraries: another minor release of Python loads, noted.
    other_python = dict(current, python=next_minor(current["python"]))
    notes = load_verified(path, installed=other_python)[1].version_notes
    assert (
        notes[0] == f"python: saved with {current['python']}, loaded with {other_python['python']} (both 3.x: accepted)"
    )


def test_a_missing_library_is_refused(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    without_skops = {name: version for name, version in library_versions().items() if name != "skops"}
    message = raised(LibraryVersionError, path, installed=without_skops)
    assert f"skops: expected {library_versions()['skops']}, found not installed" in message


def test_for_0x_libraries_the_minor_version_is_the_major_one(forest, tmp_path: Path):
    # Semantic versioning: below 1.0 a minor release may break (skops 0.16 → 0.17); a patch release may not.
    assert compatible_release("0.16.0") == (0, 16) != compatible_release("0.17.0")
    assert compatible_release("2.14.1") == compatible_release("2.15.0") == (2,)
    assert compatible_release("2.14.1+cpu") == (2,)
    path = save(forest, tmp_path, "skops")
    current = library_versions()
    zero_minor = dict(current, skops="0.16.0")
    edit_manifest(path, lambda m: m["versions"].update(skops="0.17.0"))
    assert "skops: expected 0.17.0, found 0.16.0 (not 0.17.x)" in raised(
        LibraryVersionError, path, installed=zero_minor
    )
    edit_manifest(path, lambda m: m["versions"].update(skops="0.16.3"))
    assert load_verified(path, installed=zero_minor)[1].version_notes == (
        "skops: saved with 0.16.3, loaded with 0.16.0 (both 0.16.x: accepted)",
    )


def test_a_wider_reference_input_fails_the_input_schema(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    edit_manifest(path, lambda m: m["reference"].update(input=[[*row, 1.0] for row in m["reference"]["input"]]))
    message = raised(InputSchemaError, path)
    assert f"expected 4 columns ({', '.join(IRIS_FEATURES)}), found 5" in message


def test_the_callers_feature_order_must_be_the_models(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    assert load_verified(path, feature_names=list(IRIS_FEATURES))[1].feature_names == IRIS_FEATURES
    swapped = [IRIS_FEATURES[1], IRIS_FEATURES[0], *IRIS_FEATURES[2:]]
    message = raised(InputSchemaError, path, feature_names=swapped)
    assert f"expected the caller's features {swapped}, found {IRIS_FEATURES}" in message


@pytest.mark.parametrize(
    "row, found",
    [
        (["5.1", 3.5, 1.4, 0.2], "found dtype <U"),
        ([5.1, True, 1.4, 0.2], "found true/false"),
        ([True, False, True, False], "found true/false"),
        ([5.1, None, 1.4, 0.2], "found dtype object"),
        ([5.1, 1e39, 1.4, 0.2], "within float32's range, found 1e+39"),
    ],
)
def test_reference_input_values_that_are_not_float32_numbers_fail_the_input_schema(row, found, forest, tmp_path):
    path = save(forest, tmp_path, "joblib")
    edit_manifest(path, lambda m: m["reference"]["input"].__setitem__(0, row))
    assert found in raised(InputSchemaError, path)


@pytest.mark.parametrize(
    "schema, found",
    [
        ({"dtype": "float64", "shape": [None, 4]}, "found 'float64'"),
        ({"dtype": "float32", "shape": [None, 5]}, "found [None, 5]"),
    ],
)
def test_an_edited_schema_fails_the_input_schema(schema, found, forest, tmp_path: Path):
    path = save(forest, tmp_path, "joblib")
    edit_manifest(path, lambda m: m.update(input_schema=schema))
    assert found in raised(InputSchemaError, path)


def test_a_deleted_manifest_is_missing(forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    metadata_path(path).unlink()
    assert f"expected a manifest at {metadata_path(path)}, found none" in raised(ManifestMissingError, path)


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage"], ids=["broken", "empty", "binary"])
def test_a_manifest_that_is_not_json_is_invalid(content, forest, tmp_path: Path):
    path = save(forest, tmp_path, "skops")
    metadata_path(path).write_bytes(content)
    assert "expected JSON, found content that is not JSON" in raised(ManifestInvalidError, path)


@pytest.mark.parametrize(
    "change, found",
    [
        (lambda m: m.pop("reference"), "reference: expected a value, found none"),
        (lambda m: m["reference"].pop("atol"), "reference.atol: expected a value, found none"),
        (lambda m: m.update(sha256="abc"), "sha256: expected 64 hex digits, found 'abc'"),
        (lambda m: m.update(versions=["torch"]), "versions: expected dict, found list"),
        (lambda m: m["versions"].update(torch="two"), "versions.torch: expected a version number, found 'two'"),
        (lambda m: m.update(format="zip"), "format: expected one of"),
        (lambda m: m["reference"].update(atol=-1), "reference.atol: expected a number >= 0, found -1"),
        (lambda m: m["reference"].update(output=[["a"]]), "reference.output: expected a table of numbers"),
        (lambda m: m.update(manifest_version=2), "manifest_version: expected 1, found 2"),
    ],
)
def test_a_manifest_with_a_missing_or_wrong_field_is_invalid(change, found, net, tmp_path: Path):
    path = save(net, tmp_path, "state_dict")
    edit_manifest(path, change)
    assert found in raised(ManifestInvalidError, path)


def test_plain_metadata_is_not_a_manifest(forest, tmp_path: Path):
    path = tmp_path / "model.joblib"
    get_format("joblib").save(forest, path)
    save_metadata(path, model_metadata(IRIS_FEATURES, IRIS_CLASSES, {}))
    assert "manifest_version: expected 1, found None" in raised(ManifestInvalidError, path)


def test_checks_run_in_order(net, tmp_path: Path):
    # With several things wrong, the earliest check reports: file, then libraries, then schema, then output.
    path = save(net, tmp_path, "state_dict")
    edit_manifest(path, lambda m: m["reference"]["output"][0].__setitem__(0, 99.0))
    edit_manifest(path, lambda m: m["reference"]["input"][0].append(1.0))
    raised(InputSchemaError, path)
    edit_manifest(path, lambda m: m["versions"].update(torch=next_major(m["versions"]["torch"])))
    raised(LibraryVersionError, path)
    path.write_bytes(path.read_bytes() + b"\0")
    raised(ChecksumMismatchError, path)
    edit_manifest(path, lambda m: m.pop("sha256"))
    raised(ManifestInvalidError, path)
    metadata_path(path).unlink()
    raised(ManifestMissingError, path)


def test_every_check_has_its_own_class_and_name():
    assert len(set(CHECKS)) == len({cls.check for cls in CHECKS}) == 6
    assert all(issubclass(cls, ManifestError) and issubclass(cls, ValueError) for cls in CHECKS)


# --- live rows against the schema -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest(forest, tmp_path_factory) -> Manifest:
    """A saved forest's manifest."""
    return load_verified(save(forest, tmp_path_factory.mktemp("live"), "joblib"))[1]


def test_verify_input_returns_float32_rows(manifest: Manifest):
    rows = manifest.verify_input([[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]])
    assert rows.dtype == np.float32 and rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[1], [6, 3, 5, 2])


@pytest.mark.parametrize(
    "rows, found",
    [
        ([[5.1, 3.5, 1.4]], "expected 4 columns"),
        ([5.1, 3.5, 1.4, 0.2], "expected a 2-D table of rows with 4 columns, found shape [4]"),
        ([], "found shape [0]"),
        ([[5.1, 3.5, 1.4, 0.2], [5.1]], "rows of different lengths"),
        ([[float("nan"), 3.5, 1.4, 0.2]], "found nan"),
        ([[float("inf"), 3.5, 1.4, 0.2]], "found inf"),
        ([["a", "b", "c", "d"]], "expected numbers (dtype float32)"),
    ],
)
def test_verify_input_refuses_rows_outside_the_schema(rows, found, manifest: Manifest):
    with pytest.raises(InputSchemaError) as info:
        manifest.verify_input(rows)
    assert str(info.value).startswith("input schema check failed: ") and found in str(info.value), str(info.value)
