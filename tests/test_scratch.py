"""Temporary paths left by a killed process are removed by the next one; a running process's paths are kept."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from course_lib.scratch import is_running, process_temp_dir, process_temp_file, remove_orphans

pytestmark = pytest.mark.skipif(os.name != "posix", reason="orphans are found with os.kill(pid, 0), POSIX only")

MAKE_AND_DIE = """
import os, signal, sys
from course_lib.scratch import process_temp_dir, process_temp_file
folder = process_temp_dir(sys.argv[1])
(folder / "model.onnx").write_bytes(b"x" * 1000)
fd, log = process_temp_file(sys.argv[1], suffix=".log")
print(folder, log, flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finalizers: what nbval does to a kernel
sys.stdin.read()  # "live": stay until the test closes stdin
"""


@pytest.fixture
def prefix() -> str:
    """A prefix no other test uses, so that parallel workers never see each other's paths."""
    return f"course-test-{uuid.uuid4().hex[:8]}-"


def _start(prefix: str, how: str) -> tuple[subprocess.Popen[str], list[Path]]:
    """A Python process that makes a folder and a file with `prefix`, then dies by SIGKILL or stays alive."""
    process = subprocess.Popen(
        [sys.executable, "-c", MAKE_AND_DIE, prefix, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    paths = [Path(part) for part in process.stdout.readline().split()]
    assert len(paths) == 2 and all(path.exists() for path in paths), paths
    return process, paths


def test_the_paths_of_a_killed_process_are_removed_by_the_next_one(prefix):
    dead, (folder, log) = _start(prefix, "die")
    assert dead.wait(30) == -signal.SIGKILL and folder.exists() and log.exists()  # the killed process left them
    live, live_paths = _start(prefix, "live")
    try:
        assert not folder.exists() and not log.exists()  # the live process's process_temp_dir removed them
        mine = process_temp_dir(prefix)
        assert all(path.exists() for path in live_paths)  # a running process's paths are kept
        assert remove_orphans(prefix) == [] and mine.exists()  # and so are this process's
    finally:
        live.stdin.close()
        live.wait(30)
    assert sorted(remove_orphans(prefix)) == sorted(live_paths)  # it ended normally without removing them
    mine.rmdir()


def test_paths_are_named_after_their_process_and_other_names_are_left_alone(prefix):
    fd, path = process_temp_file(prefix, suffix=".log")
    os.close(fd)
    assert path.name.startswith(f"{prefix}pid{os.getpid()}-") and path.suffix == ".log"
    assert path.parent == Path(tempfile.gettempdir())
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(30)
    stranger = Path(tempfile.gettempdir()) / f"{prefix}pidlike-pid{ended.pid}-keep"  # not a process id after "pid"
    stranger.write_text("not ours")
    try:
        remove_orphans(prefix)
        assert stranger.exists() and path.exists()
    finally:
        stranger.unlink()
        path.unlink()


def test_is_running_tells_a_running_process_from_an_ended_one():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    assert is_running(os.getpid()) and not is_running(process.pid)


def test_an_onnx_backend_keeps_its_export_in_a_folder_of_its_process_and_removes_it(classifier):
    from course_lib.vision.backends import OnnxBackend

    backend = OnnxBackend(classifier)
    folder = backend.fp32_path.parent
    assert folder.name.startswith(f"course-onnx-pid{os.getpid()}-") and backend.fp32_path.exists()
    del backend
    gc.collect()
    assert not folder.exists()
