"""`python -m bench.cpu_burner [--burners N] [--] COMMAND…`: run a command while N processes keep a core busy each.

The course promises that every assertion about a measurement holds on a loaded 2-core machine. This tool makes that
load on purpose: it starts N spinning Python processes (default 1: one of two cores taken), runs the command beside
them (typically nbval on the notebooks that assert on measurements), stops the burners and prints a report line: the
command's exit status, its wall time, and how much CPU the burners really took (a burner the scheduler starved did
not test anything). The exit status is the command's.

The burners end with this tool even when it is killed (SIGKILL included): each one checks a few times a second that
its parent is still the process that started it. On Linux the command gets SIGTERM then too (the parent-death
signal). The burners' ids are in the command's environment, `CPU_BURNER_PIDS`.

    python -m bench.cpu_burner -- python -m pytest -p no:cacheprovider -n 0 notebooks/06_making_the_image_api_fast.ipynb
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

# Spins in slices of 0.2 s and stops as soon as its parent is no longer the process that started it.
BURN = """
import os, sys, time
parent = int(sys.argv[1])
while os.getppid() == parent:
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass
"""
PIDS_VARIABLE = "CPU_BURNER_PIDS"
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies (Linux)


@dataclass(frozen=True)
class BurnReport:
    """What a run beside the burners gave: the command's exit status, its wall time, the burners' CPU time."""

    command: tuple[str, ...]
    returncode: int
    seconds: float
    burner_cpu_seconds: tuple[float, ...]
    load_average: float | None = None  # the machine's 5-minute load average at the end (None where unknown)

    @property
    def cores_taken(self) -> float:
        """The burners' CPU time over the run's wall time: 1.0 = one core kept busy all along."""
        return sum(self.burner_cpu_seconds) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for a log or a closing note."""
        shown = " ".join(self.command)
        load = "" if self.load_average is None else f", load average {self.load_average:.1f}"
        return (
            f"cpu_burner: exit {self.returncode} after {self.seconds:.0f} s; {len(self.burner_cpu_seconds)} burner(s) "
            f"took {self.cores_taken:.2f} core(s) on average (of {os.cpu_count()}{load}) — {shown}"
        )


def start_burners(count: int) -> list[subprocess.Popen]:
    """count processes that each spin on a core until stopped or until this process ends."""
    return [
        subprocess.Popen([sys.executable, "-c", BURN, str(os.getpid())], stdin=subprocess.DEVNULL) for _ in range(count)
    ]


def cpu_seconds(process: subprocess.Popen) -> float:
    """The CPU time (user + system) a running burner has used so far."""
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def stop_burners(burners: Sequence[subprocess.Popen]) -> None:
    """Stop the burners and reap them (a stopped burner never stays as a zombie of this process)."""
    for process in burners:
        process.kill()
    for process in burners:
        process.wait()


def _end_with_parent() -> None:
    """In the command's process before exec (Linux): SIGTERM when this tool dies, so a killed run leaves nothing."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_beside_burners(command: Sequence[str], burners: int = 1) -> BurnReport:
    """Run command to its end while `burners` processes spin, and report; the burners are stopped in every case."""
    started_burners = start_burners(burners)
    try:
        before = [cpu_seconds(p) for p in started_burners]
        env = {**os.environ, PIDS_VARIABLE: ",".join(str(p.pid) for p in started_burners)}
        started = time.perf_counter()
        linux = sys.platform.startswith("linux")
        returncode = subprocess.run(list(command), env=env, preexec_fn=_end_with_parent if linux else None).returncode
        seconds = time.perf_counter() - started
        used = tuple(cpu_seconds(p) - b for p, b in zip(started_burners, before, strict=True))
    finally:
        stop_burners(started_burners)
    load = os.getloadavg()[1] if hasattr(os, "getloadavg") else None  # a starved burner says the machine was busy
    return BurnReport(tuple(command), returncode, seconds, used, load)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command beside the burners, print the report; the command's exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu_burner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burners", type=int, default=1, help="spinning processes, one core each (default: 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run, e.g. -- python -m pytest notebooks/06_making_the_image_api_fast.ipynb")
    if args.burners < 0:
        parser.error("--burners must be 0 or more")
    # SIGTERM (a CI job cancelled) ends the run through the finally clause, which stops the burners.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    report = run_beside_burners(command, args.burners)
    print(report.line(), flush=True)
    return report.returncode


if __name__ == "__main__":
    sys.exit(main())
