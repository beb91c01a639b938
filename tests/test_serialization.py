"""course_lib.serialization: every format's round trip and parity, ONNX export, and the safety rules."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import skops.io as sio
import torch
import torchvision
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.models import SimpleNN
from course_lib.serialization import (
    FORMATS,
    PrintOnLoad,
    compare_formats,
    export_onnx,
    export_sklearn_onnx,
    get_format,
    library_versions,
    measure_format,
    model_metadata,
    onnx_run,
    onnx_session,
    parity,
    payload_bytes,
    read_metadata,
    save_metadata,
    sklearn_predictor,
    torch_export_load,
    torch_export_save,
    torch_predictor,
    torch_thread_count,
    torchscript_load,
    torchscript_save,
    version_mismatches,
)

X = iris_rows(100, seed=3)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_round_trip_keeps_predictions(fmt, forest, net, tmp_path: Path):
    model = forest if fmt.family == "sklearn" else net
    reference = sklearn_predictor(model) if fmt.family == "sklearn" else torch_predictor(model)
    path = tmp_path / f"model{fmt.suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no format may leak a warning (TorchScript's are silenced on purpose)
        fmt.save(model, path)
        loaded = fmt.load(path)
    assert path.stat().st_size > 0
    for rows in (X[:1], X[:64], X):  # batch 1 and batch N through the same loaded model
        p = parity(loaded, reference, rows)
        assert p.labels_equal, fmt.name
        assert p.max_abs_diff < 1e-5, (fmt.name, p.max_abs_diff)
        assert loaded(rows).shape == (len(rows), 3)


def test_parity_notices_a_different_model(net):
    other = SimpleNN().eval()  # untrained weights
    p = parity(torch_predictor(other), torch_predictor(net), X)
    assert p.max_abs_diff > 0.1
    assert not p.labels_equal


def test_export_onnx_has_a_dynamic_batch_axis_and_prints_nothing(net, tmp_path: Path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = export_onnx(net, torch.zeros(1, 4), tmp_path / "nn.onnx")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert path == tmp_path / "nn.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nn.onnx"]  # one self-contained file, no .onnx.data
    session = onnx_session(path, threads=1)
    assert session.get_inputs()[0].shape == ["batch", 4]
    assert session.get_session_options().intra_op_num_threads == 1
    for n in (1, 7, 64):
        (logits,) = onnx_run(session, X[:n])
        np.testing.assert_allclose(logits, torch_predictor(net)(X[:n]), atol=1e-5)


def test_export_onnx_leaves_no_machine_paths_in_the_file(net, tmp_path: Path):
    path = export_onnx(net, torch.zeros(1, 4), tmp_path / "nn.onnx")
    content = path.read_bytes()
    assert b"stack_trace" not in content
    assert str(Path(torch.__file__).parent).encode() not in content
    assert str(Path(__file__).parents[1]).encode() not in content
    model = onnx.load(path)
    assert all(p.key != "pkg.torch.onnx.stack_trace" for node in model.graph.node for p in node.metadata_props)
    assert any(p.key == "namespace" for node in model.graph.node for p in node.metadata_props)  # the rest stays


def test_export_onnx_fixed_batch(net, tmp_path: Path):
    session = onnx_session(export_onnx(net, torch.zeros(1, 4), tmp_path / "fixed.onnx", dynamic_batch=False))
    assert session.get_inputs()[0].shape == [1, 4]
    with pytest.raises(InvalidArgument, match="invalid dimensions for input: x"):
        onnx_run(session, X[:2])


def test_export_onnx_resnet18_dynamic_batch(tmp_path: Path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    path = export_onnx(model, torch.zeros(1, 3, 64, 64), tmp_path / "resnet18.onnx")
    assert not model.training  # export_onnx put the model in eval mode
    session = onnx_session(path)
    assert session.get_inputs()[0].shape[0] == "batch"
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    (logits,) = onnx_run(session, images)
    with torch.inference_mode():
        expected = model(images).numpy()
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert (logits.argmax(1) == expected.argmax(1)).all()


def test_export_sklearn_onnx_outputs_plain_label_and_probabilities(forest, tmp_path: Path):
    session = onnx_session(export_sklearn_onnx(forest, tmp_path / "rf.onnx"))
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    label, proba = onnx_run(session, X)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X), 3)  # zipmap off: an array, not dicts
    assert (label == forest.predict(X)).all()
    np.testing.assert_allclose(proba, forest.predict_proba(X), atol=1e-5)


def test_pickle_load_runs_code(tmp_path: Path, capsys):
    path = tmp_path / "payload.pkl"
    path.write_bytes(payload_bytes("marker 1234"))
    assert b"PrintOnLoad" not in path.read_bytes()  # the loader needs no special class: print is enough
    with open(path, "rb") as f:
        result = pickle.load(f)
    assert result is None  # what print() returned
    assert capsys.readouterr().out == "marker 1234\n"


def test_torch_load_weights_only_refuses_a_pickled_payload(net, tmp_path: Path, capsys):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": net.state_dict(), "extra": PrintOnLoad("must not print")}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path)  # weights_only=True is the default since torch 2.6
    assert "must not print" not in capsys.readouterr().out
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    assert set(torch.load(tmp_path / "weights.pt")) == set(net.state_dict())


def test_torch_load_refuses_a_whole_pickled_module(net, tmp_path: Path):
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(pickle.UnpicklingError, match="SimpleNN"):
        torch.load(tmp_path / "whole.pt")


class Custom:
    """A class skops does not know."""

    def __init__(self) -> None:
        self.value = 1


def test_skops_refuses_untrusted_types(forest, tmp_path: Path):
    path = tmp_path / "rf.skops"
    sio.dump(forest, path)
    assert sio.get_untrusted_types(file=path) == ["sklearn.tree._tree.Tree"]
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="sklearn.tree._tree.Tree"):
        sio.load(path)
    custom = tmp_path / "custom.skops"
    sio.dump({"obj": Custom()}, custom)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="Custom"):
        sio.load(custom, trusted=["sklearn.tree._tree.Tree"])
    assert get_format("skops").load(path)(X[:2]).shape == (2, 3)


def test_torchscript_helpers_are_quiet_but_jit_itself_warns(net, tmp_path: Path):
    with pytest.warns(FutureWarning, match="deprecated"):
        torch.jit.trace(net, torch.zeros(2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = torchscript_load(torchscript_save(net, tmp_path / "nn.ts"))
    assert parity(torch_predictor(loaded), torch_predictor(net), X).max_abs_diff < 1e-6


def test_torch_export_loads_without_the_model_class(net, tmp_path: Path):
    path = torch_export_save(net, tmp_path / "nn.pt2")
    module = torch_export_load(path)
    assert not isinstance(module, SimpleNN)
    for n in (1, 2, 64):
        assert torch_predictor(module)(X[:n]).shape == (n, 3)


def test_metadata_round_trip_and_version_check(tmp_path: Path):
    model_path = tmp_path / "model.joblib"
    meta = model_metadata(IRIS_FEATURES, IRIS_CLASSES, {"accuracy": 1.0}, trained_at="2026-01-01T00:00:00+00:00")
    json_path = save_metadata(model_path, meta)
    assert json_path.name == "model.joblib.meta.json"
    assert read_metadata(model_path) == meta
    assert version_mismatches(meta["versions"]) == {}
    old = dict(meta["versions"], **{"scikit-learn": "0.24.2"})
    assert version_mismatches(old) == {"scikit-learn": ("0.24.2", library_versions()["scikit-learn"])}
    assert version_mismatches({"no-such-lib": "1.0"}) == {"no-such-lib": ("1.0", "not installed")}


def test_measure_format_fills_every_column(forest, tmp_path: Path):
    m = measure_format(get_format("joblib (compress=3)"), forest, tmp_path, X, n=5, load_repeats=2)
    assert m.size_kb > 0 and m.load_ms > 0 and m.p50_batch1_ms > 0 and m.p50_batch64_ms > 0
    assert m.labels_equal and m.max_abs_diff == 0.0
    assert m.untrusted_safe.startswith("いいえ")
    assert m.needs_to_load == get_format("joblib (compress=3)").needs_to_load
    with pytest.raises(ValueError, match="64 rows"):
        measure_format(get_format("pickle"), forest, tmp_path, X[:10], n=2)


def test_an_unknown_format_name_is_an_error_listing_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown format 'joblib \(compress=9\)'; known: \['pickle', 'joblib'"):
        get_format("joblib (compress=9)")
    assert get_format("joblib (compress=3)") is FORMATS[2]


def test_export_onnx_keeps_the_sources_input_and_output_names(net, tmp_path: Path):
    names = {"input_names": ["features"], "output_names": ["logits"]}
    path = export_onnx(net, torch.zeros(1, 4), tmp_path / "named.onnx", **names)
    session = onnx_session(path)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("features", ["batch", 4])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 3])]
    (logits,) = session.run(["logits"], {"features": X[:5]})  # the source's own call
    np.testing.assert_allclose(logits, torch_predictor(net)(X[:5]), atol=1e-5)
    onnx_format = get_format("ONNX (torch.onnx)")
    onnx_format.save(net, tmp_path / "format.onnx")
    assert [i.name for i in onnx_session(tmp_path / "format.onnx").get_inputs()] == ["features"]


def test_torch_thread_count_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    other = before + 1
    with torch_thread_count(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with torch_thread_count(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), torch_thread_count(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_compare_formats_measures_at_the_given_thread_count(net, forest, tmp_path: Path):
    seen = []
    state_dict = get_format("state_dict")
    spying = dataclasses.replace(state_dict, load=lambda p: seen.append(torch.get_num_threads()) or state_dict.load(p))
    before = torch.get_num_threads()
    table = compare_formats(tmp_path, forest, net, X, n=3, load_repeats=1, formats=[spying], torch_threads=1)
    assert list(table.index) == ["state_dict"] and table.loc["state_dict", "labels_equal"]
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
