"""bench.cpu_burner: the burners really spin, the command's exit status comes back, and no burner outlives the tool
(stopped after the run, and gone when the tool itself is SIGKILLed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from bench.cpu_burner import PIDS_VARIABLE, main, run_beside_burners

ROOT = Path(__file__).resolve().parent.parent

# Prints its own id and the burners', waits until each burner has used half a second of CPU (exit 99 when one has not
# after 120 s: a burner that sleeps instead of spinning), optionally sleeps argv[2] s, then exits with status argv[1].
WATCH_BURNERS = textwrap.dedent(
    f"""
    import os, sys, time
    import psutil
    pids = [int(pid) for pid in os.environ["{PIDS_VARIABLE}"].split(",")]
    print(os.getpid(), " ".join(map(str, pids)), flush=True)
    burners = [psutil.Process(pid) for pid in pids]
    start = [sum(p.cpu_times()[:2]) for p in burners]
    deadline = time.monotonic() + 120
    while any(sum(p.cpu_times()[:2]) - s < 0.5 for p, s in zip(burners, start)):
        if time.monotonic() > deadline:
            sys.exit(99)
        time.sleep(0.05)
    if len(sys.argv) > 2:
        time.sleep(float(sys.argv[2]))
    sys.exit(int(sys.argv[1]))
    """
)


def assert_gone(pid: int) -> None:
    """The process has ended (a zombie waiting for a parent that does not reap it counts as ended)."""
    try:
        process = psutil.Process(pid)
        _, alive = psutil.wait_procs([process], timeout=10)
        assert not alive or process.status() == psutil.STATUS_ZOMBIE, f"burner {pid} is still running"
    except psutil.NoSuchProcess:
        pass


def test_burners_spin_beside_the_command_and_are_stopped_after_it(capfd):
    report = run_beside_burners([sys.executable, "-c", WATCH_BURNERS, "0"], burners=2)
    _, *pids = map(int, capfd.readouterr().out.split())
    assert report.returncode == 0 and len(pids) == len(report.burner_cpu_seconds) == 2
    assert all(seconds >= 0.5 for seconds in report.burner_cpu_seconds), report
    # A sleeping "burner" takes about 0.0001 of a core; a spinning one on a loaded 2-core machine far more than 0.05.
    assert report.cores_taken > 0.05, report
    for pid in pids:
        assert_gone(pid)


def test_the_command_exit_status_is_the_tool_exit_status(capsys):
    assert main(["--", sys.executable, "-c", WATCH_BURNERS, "3"]) == 3
    assert "cpu_burner: exit 3 after" in capsys.readouterr().out
    assert main(["--burners", "1", sys.executable, "-c", WATCH_BURNERS, "0"]) == 0


def test_burners_and_command_end_when_the_tool_is_killed():
    """A cancelled CI job may SIGKILL the tool: no finally clause runs, the burners and (on Linux) the command end."""
    tool = subprocess.Popen(
        [sys.executable, "-m", "bench.cpu_burner", "--", sys.executable, "-c", WATCH_BURNERS, "0", "600"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    command, pids = None, []
    try:
        command, *pids = map(int, tool.stdout.readline().split())
        assert pids and all(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
        tool.kill()
        tool.wait(10)
        for pid in pids:
            assert_gone(pid)
        if sys.platform.startswith("linux"):
            assert_gone(command)
    finally:
        tool.kill()
        tool.stdout.close()
        for pid in [command, *pids]:  # what a failed run left (off Linux: the orphaned command) ends here
            if pid is not None and psutil.pid_exists(pid):
                psutil.Process(pid).kill()
