"""onnx_session applies the options it is given; the backends pass theirs on; make_backend knows all three names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from course_lib.serialization import export_onnx, onnx_session
from course_lib.serialization.onnx_export import SPINNING_KEY
from course_lib.vision.backends import BACKENDS, OnnxBackend, TorchBackend, make_backend


@pytest.fixture(scope="module")
def nn_onnx(net, tmp_path_factory) -> Path:
    return export_onnx(net, torch.zeros(1, 4), tmp_path_factory.mktemp("onnx") / "nn.onnx")


def spinning_entry(session: onnxruntime.InferenceSession) -> str | None:
    """The session's spin-waiting entry, None when it was left to onnxruntime's default."""
    try:
        return session.get_session_options().get_session_config_entry(SPINNING_KEY)
    except RuntimeError:  # onnxruntime raises for a key that was never set
        return None


@pytest.mark.parametrize(("threads", "spinning", "entry"), [(1, False, "0"), (2, True, "1"), (1, None, None)])
def test_onnx_session_applies_threads_spinning_and_every_graph_optimization(nn_onnx, threads, spinning, entry):
    session = onnx_session(nn_onnx, threads=threads, spinning=spinning)
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert spinning_entry(session) == entry
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_onnx_session_defaults_leave_threads_and_spinning_to_onnxruntime(nn_onnx):
    session = onnx_session(nn_onnx)
    assert session.get_session_options().intra_op_num_threads == 0  # 0: one thread per physical core
    assert spinning_entry(session) is None


def test_onnx_backend_passes_threads_and_spinning_to_its_session_without_spinning_by_default(classifier, tmp_path):
    backend = OnnxBackend(classifier, tmp_path / "digits.onnx", threads=1)
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert spinning_entry(backend.session) == "0"
    assert spinning_entry(OnnxBackend(classifier, tmp_path / "again.onnx", spinning=True).session) == "1"
    assert backend.path == backend.fp32_path == tmp_path / "digits.onnx"
    batch = classifier.example_input(3)
    np.testing.assert_allclose(backend.probabilities(batch), classifier.probabilities(batch), atol=1e-5)


def test_make_backend_builds_each_name_and_refuses_others_listing_all(classifier):
    assert BACKENDS == ("torch", "onnx", "onnx-int8")
    assert isinstance(make_backend(classifier, "torch"), TorchBackend)
    with pytest.raises(ValueError, match="unknown backend 'int8'; expected one of torch, onnx, onnx-int8"):
        make_backend(classifier, "int8")
