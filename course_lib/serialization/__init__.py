"""Save, load and measure models in every format the course compares (pickle … ONNX, torch.export)."""

from course_lib.serialization.onnx_export import export_onnx, export_sklearn_onnx, onnx_run, onnx_session

__all__ = ["export_onnx", "export_sklearn_onnx", "onnx_run", "onnx_session"]
