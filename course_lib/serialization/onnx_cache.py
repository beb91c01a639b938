"""ONNX exports a notebook writes once and reuses: one file per name, keyed by what determines its bytes.

Notebook 06 exports ResNet-50 (about 100 MB, half a minute on 2 cores). Exported under a fixed name on every run, the
file is rewritten each time; under a new name each time, files pile up. `export_onnx_cached(model, example, folder,
name)` writes `folder/name-<key>.onnx`, where the key is a hash of what the exported bytes depend on (the model's
class, its parameters and buffers, the example's shape and dtype, the dynamic batch axis, the exporter's library
versions); an existing file with that key is reused, and files of the same name with another key are removed, so a
folder holds at most one export per name. Files are written under a temporary name and renamed when complete, so a
killed export leaves no half file to be reused; a partial file whose process has ended is removed by the next call.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from course_lib.lock import installed_versions
from course_lib.scratch import is_running
from course_lib.serialization.onnx_export import export_onnx

# Change when export_onnx changes what it writes (options, stripped metadata): old files then get a new key.
EXPORT_RECIPE = "dynamo-selfcontained-nostacktrace-v1"
EXPORT_LIBRARIES = ("torch", "onnx", "onnxscript", "onnx-ir")
KEY_DIGITS = 16


def export_key(model: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = True) -> str:
    """A hex digest of what an export of model at example depends on (the code of forward is not in it)."""
    digest = hashlib.sha256()
    versions = installed_versions(EXPORT_LIBRARIES)
    libraries = "|".join(f"{name}={versions.get(name)}" for name in EXPORT_LIBRARIES)
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    digest.update(f"{EXPORT_RECIPE}|{libraries}|{kind}|{tuple(example.shape)}|{example.dtype}|{dynamic_batch}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"|{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:KEY_DIGITS]


def export_onnx_cached(
    model: torch.nn.Module, example: torch.Tensor, folder: str | Path, name: str, dynamic_batch: bool = True
) -> Path:
    """folder/name-<key>.onnx: reused when it exists, else exported by export_onnx; other keys of name removed."""
    folder = Path(folder)
    path = folder / f"{name}-{export_key(model, example, dynamic_batch)}.onnx"
    remove_stale(folder, name, keep=path)
    if path.exists():
        return path
    partial = path.with_name(f"{path.stem}.pid{os.getpid()}.partial.onnx")
    try:
        export_onnx(model, example, partial, dynamic_batch=dynamic_batch)
        partial.replace(path)  # atomic: another kernel never reuses half a file
    finally:
        partial.unlink(missing_ok=True)
    return path


def remove_stale(folder: Path, name: str, keep: Path) -> list[Path]:
    """Remove folder's exports of name other than keep, and partial ones whose process has ended; return them."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{{KEY_DIGITS}}}(?:\.pid(\d+)\.partial)?\.onnx")
    removed = []
    for path in folder.glob(f"{name}-*.onnx") if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match is None or path == keep or (match.group(1) and is_running(int(match.group(1)))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
