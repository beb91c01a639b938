"""Save, load and measure models in every format the course compares (pickle … ONNX, torch.export)."""

from course_lib.serialization.formats import (
    FORMATS,
    SKOPS_TRUSTED_FOREST,
    Format,
    get_format,
    sklearn_predictor,
    torch_export_load,
    torch_export_save,
    torch_predictor,
    torchscript_load,
    torchscript_save,
)
from course_lib.serialization.measure import (
    Measurement,
    Parity,
    compare_formats,
    measure_format,
    parity,
    torch_thread_count,
)
from course_lib.serialization.metadata import (
    library_versions,
    metadata_path,
    model_metadata,
    read_metadata,
    save_metadata,
    version_mismatches,
)
from course_lib.serialization.onnx_export import (
    export_onnx,
    export_sklearn_onnx,
    onnx_run,
    onnx_session,
    strip_source_paths,
)
from course_lib.serialization.security import PrintOnLoad, payload_bytes

__all__ = [
    "FORMATS",
    "SKOPS_TRUSTED_FOREST",
    "Format",
    "Measurement",
    "Parity",
    "PrintOnLoad",
    "compare_formats",
    "export_onnx",
    "export_sklearn_onnx",
    "get_format",
    "library_versions",
    "metadata_path",
    "model_metadata",
    "measure_format",
    "onnx_run",
    "onnx_session",
    "parity",
    "payload_bytes",
    "read_metadata",
    "save_metadata",
    "sklearn_predictor",
    "strip_source_paths",
    "torch_export_load",
    "torch_export_save",
    "torch_predictor",
    "torch_thread_count",
    "torchscript_load",
    "torchscript_save",
    "version_mismatches",
]
