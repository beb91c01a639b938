"""End the Ray processes a driver started when that driver dies: `python ray_watchdog.py DRIVER_PID RAY_DIR`.

A kernel killed with SIGKILL ("Restart kernel", nbval's shutdown, the OOM killer) runs no atexit and no
`ray.shutdown()`. On Linux Ray ties the processes the driver starts (GCS, raylet, log monitor…) to it with a
parent-death SIGKILL, and a raylet's workers follow their raylet within seconds, but not the agents the raylet starts:
they notice its death at once, then try to report it to the GCS, which is gone too, and wait for it. Measured with
Ray 2.60 on a driver killed by SIGKILL: `ray::DashboardAgent` and `ray::RuntimeEnvAgent` ended 61 s later (GCS
reconnection timeout). `ray stop --force` would end them, and every other Ray on the machine with them.

This watchdog, started by `course_lib.ray_serving` before Ray, runs in a session of its own (Jupyter's kill of the
kernel's process group does not reach it). Every second it records the Ray processes that descend from the driver,
by PID and start time; a few times a second it checks that the driver is still its parent. Once the driver is gone,
it SIGKILLs the recorded processes that still run with the same start time (a reused PID is never hit) and their
descendants, then exits. SIGKILL, as Ray's own parent-death signal: nobody is left to answer, and an agent may
ignore SIGTERM. It exits with the driver in every case, so one watchdog lives as long as the process that started Ray.

macOS has no parent-death signal: there Ray starts a reaper of its own that kills the driver's process group when the
driver dies. This watchdog needs none (it polls its parent PID and reads processes with psutil), so it works the same
way there, but the course tests it on Linux only. Run as a file, not `-m`, so that nothing of course_lib (torch, Ray)
is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import IO

import psutil

CHECK_S = 0.2  # how often the driver is checked: its processes end within about this much of its death
RECORD_EVERY = 5  # checks between two records of the driver's Ray processes (a record scans the process table)
Key = tuple[int, float]  # a process by PID and start time: a PID alone may be reused by another process


def is_ray_process(cmdline: list[str], ray_dir: str) -> bool:
    """Whether a command line is Ray's: a process title Ray set (`ray::…`) or a program or script of the ray
    package (raylet, gcs_server, log_monitor.py…). The watchdog itself is neither: it gets the package's directory
    as an argument, not a path inside it."""
    if not cmdline:
        return False
    inside = ray_dir.rstrip(os.sep) + os.sep
    return cmdline[0].startswith("ray::") or any(arg.startswith(inside) for arg in cmdline)


def ray_descendants(parent: psutil.Process, ray_dir: str, skip: Iterable[int] = ()) -> list[psutil.Process]:
    """The Ray processes among parent's descendants, and everything below them (a worker a raylet forked)."""
    found: dict[int, psutil.Process] = {}
    skipped = set(skip)
    for process in parent.children(recursive=True):
        if process.pid in found or process.pid in skipped:
            continue
        try:
            if is_ray_process(process.cmdline(), ray_dir):
                found[process.pid] = process
                found.update((child.pid, child) for child in process.children(recursive=True))
        except psutil.Error:  # ended while we looked, or not ours to read
            continue
    return list(found.values())


def key_of(process: psutil.Process) -> Key | None:
    """The process's PID and start time, or None if it has already ended."""
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


def running_as(key: Key) -> psutil.Process | None:
    """The process with this PID if it is still the one that started at that time and has not ended (a zombie has),
    read afresh (psutil keeps a Process's start time from its first reading)."""
    pid, created = key
    try:
        process = psutil.Process(pid)
        if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


def kill_recorded(recorded: Iterable[Key]) -> None:
    """SIGKILL the recorded processes that still run as themselves, with their descendants, and reap what we can."""
    targets: dict[int, psutil.Process] = {}
    for key in recorded:
        if (process := running_as(key)) is None:  # ended, or its PID now belongs to another process
            continue
        with contextlib.suppress(psutil.Error):
            targets.update((child.pid, child) for child in process.children(recursive=True))
        targets[process.pid] = process
    for process in targets.values():
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(list(targets.values()), timeout=5)


def start_watchdog(ray_dir: str, report: int | IO | None = subprocess.DEVNULL) -> subprocess.Popen:
    """Start a watchdog of this process's Ray processes (those of the ray package in ray_dir); report: where it
    writes a line after each record ("recorded N": how many it holds), by default nowhere."""
    return subprocess.Popen(
        [sys.executable, __file__, str(os.getpid()), ray_dir],
        stdin=subprocess.DEVNULL,
        stdout=report,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of the driver's process group, which Jupyter kills as a whole
    )


def watch(driver_pid: int, ray_dir: str) -> None:
    """Record the driver's Ray processes until the driver is no longer this process's parent, then kill them."""
    me = os.getpid()
    recorded: set[Key] = set()
    checks = 0
    while os.getppid() == driver_pid:
        if checks % RECORD_EVERY == 0:
            try:
                now = ray_descendants(psutil.Process(driver_pid), ray_dir, skip=[me])
            except psutil.Error:  # the driver ended during the scan: keep the last record
                now = []
            # Processes that ended are dropped; a process is kept once seen, so a record cannot miss one that was
            # re-parented away from the driver (an agent whose raylet died) between two scans.
            recorded = {key for key in recorded if running_as(key)} | {key for p in now if (key := key_of(p))}
            with contextlib.suppress(OSError):  # a reader that went away does not end the watch
                print(f"recorded {len(recorded)}", flush=True)
        checks += 1
        time.sleep(CHECK_S)
    kill_recorded(recorded)


def main(argv: list[str]) -> None:
    """Watch the driver given on the command line (SIGINT ignored: only the driver's death ends the watch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(argv[0]), argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
