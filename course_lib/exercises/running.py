"""Run a learner's notebook in a fresh kernel, on a temporary copy, and read what its checks recorded.

Each notebook runs in a child process (`python -m course_lib.exercises.running`) that drives one kernel with
nbclient. The parent watches the child's whole process tree: past the time limit it stops every process of it, and
afterwards it stops whatever the notebook left running (a server, a subprocess), so a learner's infinite loop, a
kernel that dies or a file that is not a notebook costs that notebook only. The checks' results come from the
records `course_lib.exercises.checking` writes (COURSE_CHECK_RECORD), never from printed text.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from course_lib.exercises.checking import RECORD_ENV, CheckResult

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 600.0  # seconds a notebook may take: the slowest exercise notebook takes about 3 minutes here
GRACE = 60.0  # on top of the limit: kernel start-up and shutdown
RunStatus = Literal["ok", "timeout", "died", "invalid", "error"]
PROBLEMS: dict[str, str] = {
    "timeout": "⏱ 時間切れ",
    "died": "💥 カーネルが止まりました",
    "invalid": "📄 ノートブックとして読めません",
    "error": "⚠ 実行できませんでした",
}


@dataclass
class NotebookRun:
    """The outcome of running one notebook: how the run ended, and each check's latest result."""

    notebook: str
    status: RunStatus
    detail: str = ""
    seconds: float = 0.0
    expected: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    leftovers: int = 0  # processes the notebook left running, stopped after it

    def outcome(self, title: str) -> CheckResult:
        """The check's result, or 'missing' when the run never reached it (the reason in the message)."""
        for result in self.checks:
            if result.title == title:
                return result
        reason = PROBLEMS.get(self.status, "チェックのセルが実行されませんでした")
        return CheckResult(title, "missing", f"実行されませんでした（{reason}）")

    def outcomes(self) -> list[CheckResult]:
        """Every expected check's result, then any check the notebook ran that was not expected."""
        extra = [r for r in self.checks if r.title not in self.expected]
        return [self.outcome(title) for title in self.expected] + extra

    def to_json(self) -> dict:
        """A plain dict for `--json` output."""
        return {**asdict(self), "checks": [asdict(r) for r in self.outcomes()]}


def check_titles(source: str) -> list[str]:
    """Titles of the `check("…", …)` and `run_checks({"…": …})` calls in a cell's code, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    titles = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        first = node.args[0]
        if name == "check" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            titles.append(first.value)
        elif name == "run_checks" and isinstance(first, ast.Dict):
            titles += [k.value for k in first.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return titles


def expected_checks(name: str, fallback: Path | None = None) -> list[str]:
    """The checks a notebook should run: those of the course's solution of that name, else those in fallback."""
    solution = ROOT / "solutions" / name
    for path in (solution, fallback):
        if path is None or not path.exists():
            continue
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        sources = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
        return [title for source in sources for title in check_titles(source)]
    return []


def restore_check_cells(path: Path) -> int:
    """Put the course's check cells back into a learner's notebook (as nbgrader restores its test cells), so that
    a check edited to pass (`check("演習 1", lambda: None)`) is graded as the course wrote it; return how many."""
    solution = ROOT / "solutions" / path.name
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        course = json.loads(solution.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    course_checks = {}
    for cell in course:
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "code" and (titles := check_titles(source)):
            course_checks.update(dict.fromkeys(titles, source))
    restored = 0
    for cell in notebook.get("cells", []):
        titles = check_titles("".join(cell.get("source", ""))) if cell.get("cell_type") == "code" else []
        course = course_checks.get(titles[0]) if titles else None
        if course is not None and "".join(cell["source"]) != course:
            cell["source"], restored = course, restored + 1
    if restored:
        path.write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")
    return restored


def _read_records(path: Path) -> list[CheckResult]:
    """The latest record of each title in a record file, in the order first run."""
    latest: dict[str, CheckResult] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = CheckResult(**json.loads(line))
            except (ValueError, TypeError):
                continue
            latest.pop(record.title, None)
            latest[record.title] = record
    return list(latest.values())


def _stop(processes: Iterable[psutil.Process]) -> int:
    """Kill the processes still running (the same process, not a reused PID); return how many there were."""
    alive = [p for p in processes if p.is_running()]
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    return len(alive)


def run_notebook(path: Path, timeout: float = DEFAULT_TIMEOUT) -> NotebookRun:
    """Run a copy of the notebook in a fresh kernel in a temporary folder, and return what happened."""
    expected = expected_checks(path.name, fallback=path)
    with tempfile.TemporaryDirectory(prefix="course-run-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        restore_check_cells(copy)
        record, status_file = Path(folder) / ".checks.jsonl", Path(folder) / ".status.json"
        env = {**os.environ, RECORD_ENV: str(record)}
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "course_lib.exercises.running", str(copy), str(status_file), str(timeout)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tree: dict[int, psutil.Process] = {}
        timed_out = False
        while child.poll() is None:
            try:
                for process in psutil.Process(child.pid).children(recursive=True):
                    tree.setdefault(process.pid, process)
            except psutil.Error:
                pass
            if time.monotonic() - started > timeout + GRACE:
                timed_out = True
                _stop([psutil.Process(child.pid), *tree.values()])
                break
            time.sleep(0.25)
        child.wait()
        seconds = time.monotonic() - started
        leftovers = _stop(tree.values())
        try:
            outcome = json.loads(status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            outcome = {"status": "died", "detail": f"実行プロセスが終了コード {child.returncode} で終わりました"}
        if timed_out:
            outcome = {"status": "timeout", "detail": f"ノートブック全体が {timeout:.0f} 秒を超えました"}
        leftovers += outcome.get("leftovers", 0)
        return NotebookRun(
            notebook=path.name,
            status=outcome["status"],
            detail=outcome["detail"],
            seconds=round(seconds, 1),
            expected=expected,
            checks=_read_records(record),
            leftovers=leftovers,
        )


def run_many(paths: list[Path], timeout: float = DEFAULT_TIMEOUT, jobs: int | None = None) -> list[NotebookRun]:
    """Run several notebooks, up to `jobs` at once (default: the number of cores), results in the given order."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda p: run_notebook(p, timeout), paths))


def _adopt_orphans() -> None:
    """Linux: become the parent of every process the kernel leaves behind (a child subreaper), so that a server
    a notebook started is still ours to stop after its kernel has ended. Elsewhere the parent's watch remains."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def _execute(path: Path, status_file: Path, timeout: float) -> None:
    """The child process: execute the notebook with nbclient and write how the run ended to status_file."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    _adopt_orphans()

    def finish(status: RunStatus, detail: str = "") -> None:
        leftovers = _stop(psutil.Process().children(recursive=True))  # the kernel has been shut down by now
        outcome = {"status": status, "detail": detail, "leftovers": leftovers}
        status_file.write_text(json.dumps(outcome, ensure_ascii=False), encoding="utf-8")

    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the learner's, reported not raised
        finish("invalid", f"{type(exc).__name__}: {str(exc)[:200]}")
        return
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,  # a learner's failing cell must not keep the checks after it from running
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellTimeoutError:
        finish("timeout", f"1 つのセルが {timeout:.0f} 秒を超えました（無限ループや応答しない処理）")
    except DeadKernelError:
        finish("died", "実行中にカーネルが終了しました（os._exit、メモリ不足、クラッシュなど）")
    except Exception as exc:  # noqa: BLE001 - reported for this notebook only
        finish("error", f"{type(exc).__name__}: {str(exc)[:200]}")
    else:
        finish("ok")


if __name__ == "__main__":
    _execute(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
