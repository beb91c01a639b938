"""Ray started by the course ends with the process that started it, also when that process is SIGKILLed ("Restart
kernel", nbval, the OOM killer: no atexit): a child Python starts Ray and a Serve deployment, reports its processes and
is killed; none of them runs afterwards. Without the watchdog, Ray's agents ran 61 s longer (Ray 2.60). The watchdog
(course_lib/ray_watchdog.py) is also tested alone on stand-in processes, where the same check fails without it."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import requests

from course_lib.ray_serving import RAY_DIR, ray_processes, watch_ray_processes
from course_lib.ray_watchdog import is_ray_process, key_of, kill_recorded, running_as

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the watchdog is started on POSIX systems only")

GONE_WITHIN_S = 30.0  # a bound for processes to end, not a performance figure: the watchdog needs about 0.2 s

# A kernel stand-in: starts Ray and the image API on Serve, prints its URL and every process it started, then waits
# to be killed.
SERVE_AND_WAIT = textwrap.dedent(
    """
    import json, time
    import psutil
    from course_lib.ray_serving import ServeServer, image_api_deployment, ray_processes

    deployment = image_api_deployment("digits", num_replicas=1, ray_actor_options={"num_cpus": 1})
    server = ServeServer(deployment.bind(), name="image_api", num_cpus=2).start()
    started = [(p.pid, p.create_time(), " ".join(p.cmdline())[:80]) for p in psutil.Process().children(recursive=True)]
    print(json.dumps({"url": server.url, "ray": sorted(ray_processes()), "started": started}), flush=True)
    time.sleep(600)
    """
)


def running(processes: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """Those of (pid, start time, command) that still run as themselves (a zombie has ended; a reused PID is another
    process)."""
    alive = []
    for pid, created, line in processes:
        try:
            process = psutil.Process(pid)
            if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                alive.append((pid, created, line))
        except psutil.NoSuchProcess:
            pass
    return alive


def running_after(processes: list[tuple[int, float, str]], timeout_s: float = GONE_WITHIN_S) -> list:
    """Those still running once all have ended or timeout_s has passed."""
    deadline = time.monotonic() + timeout_s
    while (alive := running(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def kill_all(processes: list[tuple[int, float, str]]) -> None:
    """Clean up after a failed test: SIGKILL whatever of processes still runs."""
    for pid, _, _ in running(processes):
        os.kill(pid, signal.SIGKILL)


def test_ray_and_serve_end_when_the_kernel_that_started_them_is_killed(tmp_path):
    with open(tmp_path / "stderr", "w") as stderr:
        kernel = subprocess.Popen(
            [sys.executable, "-c", SERVE_AND_WAIT],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    started: list = []
    try:
        first = kernel.stdout.readline()
        assert first, f"the kernel stand-in ended before Serve answered:\n{(tmp_path / 'stderr').read_text()[-3000:]}"
        report = json.loads(first)
        started = [tuple(entry) for entry in report["started"]]
        assert requests.get(report["url"] + "/health", timeout=30).status_code == 200
        lines = {pid: line for pid, _, line in started}
        titles = [lines[pid] for pid in report["ray"]]
        # The raylet and a Serve replica, and the agents that outlived a killed driver by a minute without a watchdog
        for title in ("raylet", "ray::ServeReplica", "ray::DashboardAgent", "ray::RuntimeEnvAgent"):
            assert any(title in t for t in titles), (title, titles)
        kernel.kill()  # the kernel alone, as nbval or the OOM killer does (a group kill would also reach the agents)
        kernel.wait(30)
        left = running_after(started)
        assert left == [], f"still running {GONE_WITHIN_S:.0f} s after the kernel was killed: {left}"
    finally:
        kernel.kill()
        kernel.stdout.close()
        kill_all(started)


# A driver stand-in for the watchdog alone: starts a "Ray agent" (a script inside a stand-in ray package) and an
# unrelated program, each in a session of its own as Ray's agents are, optionally the watchdog, and waits.
DRIVER = textwrap.dedent(
    """
    import subprocess, sys, time
    from course_lib.ray_watchdog import start_watchdog

    ray_dir, watched = sys.argv[1], sys.argv[2] == "watched"
    sleep = "import time; time.sleep(600)"
    agent = subprocess.Popen([sys.executable, ray_dir + "/agent.py"], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", sleep], start_new_session=True)
    print(agent.pid, other.pid, flush=True)
    if watched:
        start_watchdog(ray_dir, report=sys.stdout)  # its "recorded N" lines come after the PIDs
    time.sleep(600)
    """
)


def run_driver(tmp_path, watched: bool) -> tuple[dict[str, tuple[int, float, str]], list]:
    """Start the stand-in driver, wait until its watchdog has recorded the agent, SIGKILL the driver alone; the
    agent and the other program as (pid, start time, name), and those of them still running afterwards."""
    (tmp_path / "ray").mkdir(exist_ok=True)
    (tmp_path / "ray" / "agent.py").write_text("import time\ntime.sleep(600)\n")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "ray"), "watched" if watched else "alone"],
        stdout=subprocess.PIPE,
        text=True,
    )
    processes: dict = {}
    try:
        for name, pid in zip(("agent", "other"), map(int, driver.stdout.readline().split()), strict=True):
            processes[name] = (pid, psutil.Process(pid).create_time(), name)
        if watched:  # its first records may precede the agent; an empty line is the end of the output
            while (line := driver.stdout.readline()) != "recorded 1\n":
                assert line, "the driver ended before its watchdog recorded the agent"
        driver.kill()  # the driver alone: nothing else gets a signal
        driver.wait(30)
        return processes, running_after([processes["agent"]], timeout_s=GONE_WITHIN_S if watched else 2)
    finally:
        driver.kill()
        driver.stdout.close()


def test_the_watchdog_kills_the_ray_processes_of_a_killed_driver_and_only_them(tmp_path):
    processes, left = run_driver(tmp_path, watched=True)
    try:
        assert left == [], "the watchdog left the driver's Ray agent running"
        assert running([processes["other"]]) != [], "the watchdog killed a process that is not Ray's"
    finally:
        kill_all(list(processes.values()))


def test_without_the_watchdog_the_agent_of_a_killed_driver_keeps_running(tmp_path):
    """The check above can fail: the same driver without a watchdog leaves its agent behind."""
    processes, left = run_driver(tmp_path, watched=False)
    try:
        assert [name for _, _, name in left] == ["agent"]
    finally:
        kill_all(list(processes.values()))


def test_a_recorded_pid_that_now_belongs_to_another_process_is_not_killed():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        pid, created = key_of(psutil.Process(sleeper.pid))
        kill_recorded([(pid, created - 1.0)])  # recorded with another start time: the PID's earlier owner
        assert running_as((pid, created)) is not None
        kill_recorded([(pid, created)])  # itself: killed (and reaped: it is this process's child)
        assert running_as((pid, created)) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ray_processes_are_told_apart_by_title_or_by_the_ray_package_path():
    ray_dir = "/venv/lib/python3.11/site-packages/ray"
    assert is_ray_process(["ray::DashboardAgent"], ray_dir)
    assert is_ray_process([f"{ray_dir}/core/src/ray/raylet/raylet", "--node_id=1"], ray_dir)
    assert is_ray_process(["/venv/bin/python", "-u", f"{ray_dir}/_private/log_monitor.py"], ray_dir)
    assert not is_ray_process(["/venv/bin/python", "/course_lib/ray_watchdog.py", "42", ray_dir], ray_dir)
    assert not is_ray_process(["/venv/bin/python", "-m", "uvicorn", "app:app"], ray_dir)
    assert not is_ray_process(["/venv/bin/python", f"{ray_dir}2/x.py"], ray_dir)  # another package named ray…
    assert not is_ray_process([], ray_dir)  # a zombie's command line


def test_one_watchdog_per_process_and_it_is_not_counted_as_ray():
    watch_ray_processes()
    watch_ray_processes()
    watchdogs = [p for p in psutil.Process().children() if "ray_watchdog.py" in " ".join(p.cmdline())]
    assert len(watchdogs) == 1, watchdogs
    assert os.getpgid(watchdogs[0].pid) != os.getpgid(0)  # a kill of this process's group does not reach it
    assert watchdogs[0].pid not in ray_processes() and RAY_DIR in watchdogs[0].cmdline()
