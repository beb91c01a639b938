"""What notebook 06 leaves on disk is bounded: its ONNX export is written once and reused (one file per name, keyed by
what determines it), its optimised graphs go to a temporary folder that is removed, and running it again adds nothing.

A run of 06 used to leave about 580 MiB of ResNet-50 ONNX files in notebooks/artifacts/. The notebook takes minutes,
so these tests run its export helper, `export_onnx_cached`, the way the notebook calls it, on a small model, and read
the notebook's code for every ONNX file it writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_lib.models import SimpleNN
from course_lib.serialization import onnx_session
from course_lib.serialization.onnx_cache import export_key, export_onnx_cached

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_06 = ROOT / "notebooks" / "06_making_the_image_api_fast.ipynb"
EXAMPLE = torch.zeros(2, 4)


def model(seed: int = 0) -> SimpleNN:
    """A small network with seeded weights (the export takes seconds, not ResNet-50's half minute)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SimpleNN().eval()


def folder_bytes(folder: Path) -> int:
    """The size of every file in folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ended_pid() -> int:
    """The id of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, tuple[int, int]]:
    """A first "run": the folder, the export and its (inode, mtime) right after it was written."""
    folder = tmp_path_factory.mktemp("artifacts")
    path = export_onnx_cached(model(), EXAMPLE, folder, "iris")
    stat = path.stat()
    return folder, path, (stat.st_ino, stat.st_mtime_ns)


def test_a_second_run_reuses_the_export_and_the_folder_does_not_grow(exported):
    folder, path, first = exported
    size = folder_bytes(folder)
    again = export_onnx_cached(model(), EXAMPLE, folder, "iris")  # another instance, the same weights
    assert again == path and (again.stat().st_ino, again.stat().st_mtime_ns) == first  # not written again
    assert folder_bytes(folder) == size and [p.name for p in folder.iterdir()] == [path.name]


def copy_into(path: Path, folder: Path) -> Path:
    """A copy of an export in another folder (an earlier run's file, without exporting again)."""
    copy = folder / path.name
    shutil.copyfile(path, copy)
    return copy


def test_changed_weights_give_a_new_export_that_replaces_the_old_one(exported, tmp_path):
    old = copy_into(exported[1], tmp_path)
    assert export_onnx_cached(model(0), EXAMPLE, tmp_path, "iris") == old
    changed = model(1)
    new = export_onnx_cached(changed, EXAMPLE, tmp_path, "iris")
    assert new != old and not old.exists() and sorted(tmp_path.iterdir()) == [new]
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]], dtype=np.float32)
    (logits,) = onnx_session(new).run(None, {onnx_session(new).get_inputs()[0].name: x})
    with torch.inference_mode():
        expected = changed(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)  # the file is the changed model, not the old one


def test_the_key_follows_what_determines_the_bytes():
    key = export_key(model(), EXAMPLE)
    assert export_key(model(), EXAMPLE) == key  # same weights in another instance
    assert export_key(model(1), EXAMPLE) != key  # other weights
    assert export_key(model(), torch.zeros(2, 4, dtype=torch.float64)) != key  # the example's dtype
    assert export_key(model(), torch.zeros(3, 4)) != key  # its shape
    assert export_key(model(), EXAMPLE, dynamic_batch=False) != key
    nudged = model()
    with torch.no_grad():
        nudged.fc2.bias[0] += 1e-7  # a last-bits difference is another file
    assert export_key(nudged, EXAMPLE) != key


def test_partial_exports_of_ended_processes_and_other_keys_go_other_names_stay(exported, tmp_path):
    folder = tmp_path
    kept = copy_into(exported[1], folder)
    dead = folder / f"{kept.stem}.pid{ended_pid()}.partial.onnx"  # a kernel killed during its export
    alive = folder / f"{kept.stem}.pid{os.getpid()}.partial.onnx"  # an export under way
    stale = folder / f"iris-{'0' * 16}.onnx"  # an export of other weights or library versions
    others = [
        folder / f"iris-int8-{'0' * 16}.onnx",
        folder / "iris-notes.txt",
        folder / "resnet50-0123456789abcdef.onnx",
    ]
    for file in (dead, alive, stale, *others):
        file.write_bytes(b"x" * 100)
    assert export_onnx_cached(model(), EXAMPLE, folder, "iris") == kept
    assert not dead.exists() and not stale.exists()
    assert alive.exists() and all(file.exists() for file in others)


def code_of(notebook: Path) -> str:
    """The code cells of a notebook, joined."""
    return "\n".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code")


def test_notebook_06_writes_its_onnx_files_through_the_cache_or_into_a_removed_temporary_folder():
    code = "\n".join(line for line in code_of(NOTEBOOK_06).splitlines() if ".unlink(" not in line)  # removing is fine
    fixed_names = re.findall(r"ART\s*/\s*f?[\"'][^\"'\n]*\.onnx[\"']", code)
    assert fixed_names == [], f"an ONNX file under a fixed name in artifacts/ is left after every run: {fixed_names}"
    assert re.search(r"export_onnx_cached\(.*\bART\b", code), "the ResNet-50 export should be reused"
    # The optimised graphs (about 100 MB each) are only counted: a process-owned temporary folder, removed after.
    graphs = re.search(r"(\w+) = process_temp_dir\(", code)
    assert graphs and f"shutil.rmtree({graphs.group(1)}" in code
    assert re.search(rf"= {graphs.group(1)} / f?[\"'][^\"'\n]*\.onnx[\"']", code), "graphs saved elsewhere"
