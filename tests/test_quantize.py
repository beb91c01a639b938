"""int8 quantization: deterministic calibration data, the onnx-int8 backend, its start-up parity check (shown to
fail on broken models), the accuracy cost, the cache, and the CPU's VNNI flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib.serialization import export_onnx, onnx_session
from course_lib.vision.backends import OnnxBackend, OnnxInt8Backend, make_backend
from course_lib.vision.digits import digits_resnet18, digits_tensors
from course_lib.vision.quantize import (
    CALIBRATION_BATCH,
    INT8_MEASURED_ELSEWHERE,
    MIN_TOP1_AGREEMENT,
    BatchReader,
    QuantizationParityError,
    accuracy_cost,
    cached_int8_path,
    calibration_inputs,
    check_parity,
    cpu_instructions,
    describe_vnni,
    has_vnni,
    int8_format,
    int8_outlook,
    parity_inputs,
    quantize_classifier,
    quantize_onnx,
    random_crops,
    required_agreement,
    top1_agreement,
    vnni_support,
)


@pytest.fixture(scope="module")
def int8_backend(classifier) -> OnnxInt8Backend:
    """The digits classifier served by make_backend(..., "onnx-int8") (the int8 file comes from the cache)."""
    return make_backend(classifier, "onnx-int8")


def batches(reader: BatchReader) -> list[np.ndarray]:
    feeds = iter(reader.get_next, None)
    return [feed[reader.input_name] for feed in feeds]


def test_calibration_reader_yields_the_same_batches_every_time_then_none(classifier):
    first = BatchReader("x", calibration_inputs(classifier))
    again = BatchReader("x", calibration_inputs(classifier))
    a = batches(first)
    assert first.get_next() is None
    assert len(a) == len(first) == -(-len(first.inputs) // CALIBRATION_BATCH)
    assert {len(b) for b in a[:-1]} == {CALIBRATION_BATCH} and a[0].dtype == np.float32
    for x, y in zip(a, batches(again), strict=True):
        np.testing.assert_array_equal(x, y)
    first.rewind()
    np.testing.assert_array_equal(first.get_next()["x"], a[0])


def test_digits_calibrate_on_the_training_split_and_are_checked_on_the_held_out_one(classifier):
    x_train, x_test, _, _ = digits_tensors()
    np.testing.assert_array_equal(calibration_inputs(classifier), x_train.numpy())
    np.testing.assert_array_equal(parity_inputs(classifier), x_test.numpy())


def test_photo_crops_are_seeded_mirrored_at_random_and_differ_between_seeds():
    crops = random_crops(8, seed=0)
    assert [np.asarray(c).tobytes() for c in crops] == [np.asarray(c).tobytes() for c in random_crops(8, seed=0)]
    assert [c.size for c in crops] != [c.size for c in random_crops(8, seed=1)]
    assert len({c.size for c in crops}) > 1 and all(min(c.size) > 0 for c in crops)


def test_int8_backend_gives_probabilities_and_agrees_with_fp32_on_held_out_digits(classifier, int8_backend):
    assert int8_backend.name == "onnx-int8" and int8_backend.path != int8_backend.fp32_path
    _, x_test, _, _ = digits_tensors()
    probs = int8_backend.probabilities(x_test[:50])
    assert probs.shape == (50, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    fp32 = classifier.probabilities(x_test).argmax(1)
    agreement = float(np.mean(int8_backend.probabilities(x_test).argmax(1) == fp32))
    assert agreement >= MIN_TOP1_AGREEMENT
    assert int8_backend.parity.agreement == pytest.approx(agreement, abs=1 / len(x_test))
    assert int8_backend.parity.n == len(x_test) and int8_backend.parity.threshold == MIN_TOP1_AGREEMENT


def test_parity_check_refuses_int8_calibrated_on_nonsense(classifier, int8_backend, tmp_path: Path):
    reader = BatchReader(int8_backend.input_name, np.zeros((64, *classifier.input_shape), np.float32))
    broken = quantize_onnx(int8_backend.fp32_path, tmp_path / "zeros-calibrated.onnx", reader)
    with pytest.raises(QuantizationParityError, match=r"top-1 class of only \d+\.\d% of 360 fixed inputs"):
        OnnxInt8Backend(classifier, tmp_path / "fp32.onnx", int8_path=broken)


def test_parity_check_refuses_the_file_of_another_model(classifier, tmp_path: Path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = digits_resnet18().eval()
    wrong = export_onnx(untrained, classifier.example_input(2), tmp_path / "untrained.onnx")
    with pytest.raises(QuantizationParityError, match=f"at least {MIN_TOP1_AGREEMENT:.0%} required"):
        OnnxInt8Backend(classifier, tmp_path / "fp32.onnx", int8_path=wrong)


def test_check_parity_threshold_is_inclusive(int8_backend):
    fp32, int8 = onnx_session(int8_backend.fp32_path), int8_backend.session
    inputs = parity_inputs(int8_backend.classifier)[:40]
    agreement = top1_agreement(fp32, int8, inputs)
    assert check_parity(fp32, int8, inputs, threshold=agreement).ok
    with pytest.raises(QuantizationParityError):
        check_parity(fp32, int8, inputs, threshold=agreement + 1e-6)


def test_random_weights_are_checked_report_only(classifier):
    assert required_agreement(classifier) == MIN_TOP1_AGREEMENT
    assert required_agreement(dataclasses.replace(classifier, name="resnet50-random")) == 0.0


def test_accuracy_cost_measures_both_models_on_the_held_out_digits(classifier, int8_backend):
    cost = accuracy_cost(classifier, int8_backend.fp32_path, int8_backend.path)
    assert cost.inputs == "360 held-out digits"
    assert cost.fp32_accuracy == pytest.approx(classifier.accuracy, abs=1e-6)  # the fp32 export is the model
    assert cost.drop_points == pytest.approx((cost.fp32_accuracy - cost.int8_accuracy) * 100)
    assert cost.agreement == pytest.approx(int8_backend.parity.agreement)
    fp32_only = accuracy_cost(classifier, int8_backend.fp32_path, int8_backend.fp32_path)
    assert (fp32_only.agreement, fp32_only.drop_points) == (1.0, 0.0)


def test_int8_model_is_cached_per_fp32_file_and_recipe(classifier, int8_backend):
    path = int8_backend.path
    assert path == cached_int8_path(classifier, int8_backend.fp32_path) and path.exists()
    before = path.stat().st_mtime_ns
    assert quantize_classifier(classifier, int8_backend.fp32_path) == path
    assert path.stat().st_mtime_ns == before  # loaded, not quantized again
    assert cached_int8_path(classifier, int8_backend.fp32_path, reduce_range=bool(has_vnni())) != path


def test_vnni_flags_are_read_from_cpuinfo_and_unknown_without_it(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n\nflags\t\t: fpu\n")
    assert vnni_support(cpuinfo) == {"AVX-512 VNNI": True, "AVX-VNNI": False}
    assert has_vnni(cpuinfo) is True and "AVX-512 VNNI: yes, AVX-VNNI: no" in describe_vnni(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx_vnni\n")
    assert vnni_support(cpuinfo) == {"AVX-512 VNNI": False, "AVX-VNNI": True}
    cpuinfo.write_text("flags\t\t: fpu sse avx2\n")
    assert has_vnni(cpuinfo) is False
    missing = tmp_path / "no-such-file"
    assert vnni_support(missing) is None and has_vnni(missing) is None
    assert "VNNI support unknown" in describe_vnni(missing)


def test_int8_instructions_are_read_on_x86_and_arm_and_this_machine_leads_the_outlook(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert cpu_instructions(cpuinfo) == {
        "AVX2": True,
        "AVX-512": True,
        "AVX-512 VNNI": True,
        "AVX-VNNI": False,
        "ARM dot product": False,
    }
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd crc32 atomics asimddp\n")
    assert [label for label, present in cpu_instructions(cpuinfo).items() if present] == ["ARM dot product"]
    assert cpu_instructions(tmp_path / "no-such-file") is None
    cpuinfo.write_text("flags\t\t: fpu sse avx2\n")
    rows = int8_outlook(50.0, 40.0, cpuinfo)
    assert rows[0]["cpu"].endswith(": AVX2)") and rows[0]["int8_speedup"] == pytest.approx(1.25)
    assert [row["cpu"] for row in rows[1:]] == [row["cpu"] for row in INT8_MEASURED_ELSEWHERE]
    assert rows[1]["int8_speedup"] > 2 and 1.0 < rows[2]["int8_speedup"] < 1.1  # VNNI's step; AVX2 alone: ~1.08×
    assert rows[3]["int8_speedup"] < 0.8  # the S8S8 trap the recipe avoids (test above)
    assert rows[-1]["int8_speedup"] is None  # never measured: no figure is made up
    assert "unknown" in int8_outlook(50.0, 40.0, tmp_path / "no-such-file")[0]["cpu"]


def test_int8_recipe_stays_u8s8_and_7_bit_where_int8_would_be_slower_than_fp32(int8_backend):
    """The recipe's format is its speed: int8 (S8S8) activations ran ResNet-50 slower than fp32 on an AVX2 CPU (69.3
    vs 47.9 ms, issue 28); full 8-bit weights saturate VPMADDUBSW without VNNI. A switch to either fails here."""
    weight_bits = 8 if has_vnni() else 7
    assert int8_format(int8_backend.path) == {
        "activations": "uint8",
        "weights": "int8",
        "per_channel": True,
        "weight_bits": weight_bits,
    }


def test_int8_format_tells_the_recipe_from_s8s8_and_8_bit_weights(classifier, int8_backend, tmp_path: Path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    reader = BatchReader(onnx_session(int8_backend.fp32_path).get_inputs()[0].name, calibration_inputs(classifier))
    s8s8 = tmp_path / "s8s8.onnx"
    quantize_static(
        str(int8_backend.fp32_path),
        str(s8s8),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    assert int8_format(s8s8) == {"activations": "int8", "weights": "int8", "per_channel": True, "weight_bits": 8}


def test_int8_quantizes_a_given_fp32_backend_s_export_instead_of_exporting_again(classifier, int8_backend):
    fp32 = OnnxBackend(classifier)
    reused = OnnxInt8Backend(classifier, fp32=fp32)
    assert reused.fp32_path == fp32.fp32_path and reused.path == int8_backend.path  # the same cached int8 file
    assert reused.parity.agreement == int8_backend.parity.agreement
    batch = classifier.example_input(4)
    np.testing.assert_allclose(reused.probabilities(batch), int8_backend.probabilities(batch), atol=1e-6)
    with pytest.raises(ValueError, match="same classifier"):
        OnnxInt8Backend(dataclasses.replace(classifier), fp32=fp32)
