"""`python -m course_lib` sub-commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.__main__ import ROOT, int8_note
from course_lib.vision.quantize import has_vnni


def run(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m course_lib args…` in root (the course_lib found there is the one that runs: `-m` puts cwd first)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONSAFEPATH"}}
    return subprocess.run(
        [sys.executable, "-m", "course_lib", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_doctor_prints_versions_and_cache_state():
    result = run("doctor")
    assert result.returncode == 0, result.stderr
    for key in ("python", "torch", "onnxruntime", "cpu cores", "imagenet resnet50 weights"):
        assert key in result.stdout


def test_exercises_check_passes_on_the_committed_tree():
    result = run("exercises", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_options_are_refused_outside_lab():
    result = run("doctor", "--bogus")
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr


def test_exercises_check_names_every_stale_exercise_and_fails(tmp_path):
    """In a copy of the course: build, check (clean), then edit, delete, orphan and out-date exercises; check again."""
    shutil.copytree(ROOT / "course_lib", tmp_path / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    solutions = sorted(path.name for path in (tmp_path / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert len(solutions) >= 4
    built = run("exercises", root=tmp_path)
    assert built.returncode == 0 and built.stdout.startswith(f"{len(solutions)} exercise notebook(s) changed"), built
    clean = run("exercises", "--check", root=tmp_path)
    assert (clean.returncode, clean.stdout) == (0, ""), clean

    exercises = tmp_path / "exercises"
    edited = nbformat.read(exercises / solutions[0], as_version=4)
    edited.cells.append(nbformat.v4.new_code_cell("print('my own cell')"))
    nbformat.write(edited, exercises / solutions[0])
    (exercises / solutions[1]).unlink()
    changed = nbformat.read(tmp_path / "solutions" / solutions[2], as_version=4)
    changed.cells.append(nbformat.v4.new_markdown_cell("a new paragraph in the solution"))
    nbformat.write(changed, tmp_path / "solutions" / solutions[2])
    shutil.copy(exercises / solutions[3], exercises / "99_orphan.ipynb")

    stale = run("exercises", "--check", root=tmp_path)
    assert stale.returncode == 1, stale
    assert stale.stdout.splitlines() == [
        f"out of date: exercises/{name} (run `make exercises`)" for name in [*solutions[:3], "99_orphan.ipynb"]
    ]
    rebuilt = run("exercises", root=tmp_path)
    assert "deleted (no solution) exercises/99_orphan.ipynb" in rebuilt.stdout, rebuilt
    assert run("exercises", "--check", root=tmp_path).returncode == 0


def test_serve_flags_are_named_as_the_app_takes_them():
    from course_lib.__main__ import BACKEND_NAMES, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WAIT_MS, build_parser
    from course_lib.apps import image_api
    from course_lib.vision.auto_backend import AUTO
    from course_lib.vision.backends import BACKENDS

    assert BACKEND_NAMES == [*BACKENDS, AUTO]  # the parser's copies (it imports no torch) match the library's
    assert (DEFAULT_MAX_WAIT_MS, DEFAULT_MAX_QUEUE) == (image_api.DEFAULT_MAX_WAIT_MS, image_api.DEFAULT_MAX_QUEUE)
    flags = "serve image-api --backend onnx-int8 --max-batch 8 --max-wait-ms 2.5 --max-queue 32 --workers 2"
    args = build_parser().parse_args(flags.split())
    settings = {"backend": "onnx-int8", "max_batch": 8, "max_wait_ms": 2.5, "max_queue": 32}
    assert {key: getattr(args, key) for key in image_api.ENVIRONMENT} == settings and args.workers == 2
    defaults = build_parser().parse_args(["serve", "image-api"])
    assert (defaults.backend, defaults.max_batch, defaults.workers) == ("auto", 1, 1)  # the fastest here, one process


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "argument --max-batch: 0 is out of range: expected an integer from 1 to 256"),
        (["--max-batch", "eight"], "argument --max-batch: 'eight' is not an integer"),
        (["--max-batch", "2.5"], "argument --max-batch: '2.5' is not an integer"),
        (["--max-wait-ms", "-1"], "argument --max-wait-ms: -1 is out of range: expected a number from 0 to 1000"),
        (["--max-wait-ms", "nan"], "argument --max-wait-ms: nan is out of range"),
        (["--max-queue", "0"], "argument --max-queue: 0 is out of range: expected an integer from 1 to 100000"),
        (["--workers", "0"], "argument --workers: 0 is out of range: expected an integer from 1 to 64"),
        (["--workers", "two"], "argument --workers: 'two' is not an integer"),
        (["--backend", "tensorrt"], "argument --backend: invalid choice: 'tensorrt'"),
        (["--port", "70000"], "argument --port: 70000 is out of range: expected an integer from 0 to 65535"),
        (["--max-batch", "16", "--max-queue", "8"], "error: --max-queue (8) must be at least --max-batch (16)"),
    ],
)
def test_serve_refuses_bad_flag_values_with_a_message(flags, message):
    result = run("serve", "image-api", *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and result.stderr.startswith("usage: python -m course_lib serve")
    assert "Traceback" not in result.stderr and "serving" not in result.stdout


def test_serve_int8_with_batching_in_two_worker_processes(classifier):
    import psutil
    import requests

    from course_lib.servers import serve_script
    from course_lib.vision import MODEL_ENV, sample_images

    command = "python -m course_lib serve image-api --port {port} --backend onnx-int8 --max-batch 8 --workers 2"
    samples = sample_images()
    with serve_script(command, env={MODEL_ENV: "digits"}, ready_path="/health", timeout=300) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        answers = [
            requests.post(server.url + "/predict", files={"file": ("d.png", samples[f"digit_{d}.png"])}, timeout=60)
            for d in (0, 1, 2)
        ]
        workers = [p for p in psutil.Process(server.process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        log = server.log()
    assert health["model"] == "digits" and health["backend"] == "onnx-int8", health
    assert health["batching"]["max_batch"] == 8 and health["batching"]["max_wait_ms"] == 5.0, health
    assert [r.status_code for r in answers] == [200] * 3, log
    assert [r.json()["top_class"] for r in answers] == ["0", "1", "2"]
    assert {r.json()["backend"] for r in answers} == {"onnx-int8"}
    assert len(workers) == 2, log
    assert "serving image-api (digits, onnx-int8, batches of up to 8, 2 worker processes)" in log
    note = int8_note(has_vnni())  # said where int8 may not beat fp32 (no VNNI), and only there
    assert (note in log) if note else ("note: this CPU" not in log), log


def test_naming_int8_on_a_cpu_without_vnni_says_it_may_not_pay_off():
    assert int8_note(True) is None  # VNNI: int8 is the fast path, nothing to say
    assert "reports no VNNI" in int8_note(False) and "(auto)" in int8_note(False)
    assert "does not say whether it has VNNI" in int8_note(None)  # macOS, Windows: no /proc/cpuinfo
