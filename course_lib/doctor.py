"""Environment check for the course: versions, CPU/GPU, cached weights, free disk."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

from course_lib.lock import FIX_COMMAND, installed_differences, installed_versions

PACKAGES = ["torch", "torchvision", "onnxruntime", "onnx", "scikit-learn", "fastapi", "flask", "uvicorn", "pydantic"]


def locked_versions_line(differences: list[str]) -> str:
    """One line for the report: all packages as locked, or which differ and the command that fixes them."""
    if not differences:
        return "as in requirements-lock.txt"
    return f"{len(differences)} differ from requirements-lock.txt — fix: {FIX_COMMAND}\n  " + "\n  ".join(differences)


def doctor_report() -> dict[str, str]:
    """Collect the facts a learner or instructor needs to debug a set-up."""
    import torch

    report = {"python": sys.version.split()[0], "platform": platform.platform()}
    installed = installed_versions(PACKAGES)
    report.update({name: installed.get(name, "not installed") for name in PACKAGES})
    report["cpu cores"] = str(os.cpu_count())
    report["torch threads"] = str(torch.get_num_threads())
    report["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"
    report["mps (Apple GPU)"] = "yes" if torch.backends.mps.is_available() else "no"
    from course_lib.vision.classifier import imagenet_weights_path

    weights = imagenet_weights_path()
    report["imagenet resnet50 weights"] = "cached" if weights.exists() else "not cached"
    try:
        from course_lib.vision.classifier import resolve_model_name

        report["image model (auto)"] = resolve_model_name("auto")
    except ValueError as exc:  # a wrong COURSE_IMAGE_MODEL value
        report["image model (auto)"] = f"error: {exc}"
    report["locked versions"] = locked_versions_line(installed_differences())
    report["free disk (GB)"] = f"{shutil.disk_usage(Path.cwd()).free / 1e9:.1f}"
    return report


def doctor() -> dict[str, str]:
    """Print the environment check as aligned lines and return it."""
    report = doctor_report()
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    return report
