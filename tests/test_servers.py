"""course_lib.servers over real HTTP: Flask and FastAPI in threads, scripts as subprocesses."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import asynccontextmanager

import psutil
import pytest
import requests
from fastapi import FastAPI
from flask import Flask
from helpers import open_fds, settled_thread_count

from course_lib.servers import ASGIServer, PortInUseError, ScriptServer, ServerError, WSGIServer, serve, serve_script


class Gate:
    """Holds a request inside its handler until the test opens it: `entered` is set once the handler runs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.left = threading.Event()

    def hold(self) -> dict:
        """Handler body: signal entry, wait until opened (30 s at most), signal exit."""
        self.entered.set()
        self.opened.wait(30)
        self.left.set()
        return {"slow": True}


def flask_app(gate: Gate | None = None) -> Flask:
    app = Flask("hello")

    @app.get("/health")
    def health():
        return {"status": "ok", "framework": "flask"}

    @app.get("/slow")
    def slow():
        return (gate or Gate()).hold()

    return app


def fastapi_app(gate: Gate | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok", "framework": "fastapi"}

    @app.get("/slow")
    def slow():
        return (gate or Gate()).hold()

    return app


APPS = {"flask": flask_app, "fastapi": fastapi_app}


def port_is_free(port: int) -> bool:
    """True when a new server could listen on the port now (as bind_socket does, TIME_WAIT leftovers allowed)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize(("name", "server_class"), [("flask", WSGIServer), ("fastapi", ASGIServer)])
def test_serve_picks_the_server_for_the_protocol(name, server_class):
    with serve(APPS[name]()) as server:
        assert type(server) is server_class
        assert repr(server) == f"<{server_class.__name__} {server.url}>"
    assert repr(server) == f"<{server_class.__name__} stopped>"


@pytest.mark.parametrize("name", APPS)
def test_serves_on_loopback_and_os_chosen_port_then_frees_it(name):
    with serve(APPS[name]()) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok", "framework": name}
        port = server.port
    assert not server.running
    assert port_is_free(port)
    with pytest.raises(requests.ConnectionError, match="Connection refused"):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)


@pytest.mark.parametrize("name", APPS)
def test_long_lived_handle_start_is_idempotent_and_stop_twice_is_harmless(name):
    server = serve(APPS[name]())
    assert server.start() is server  # already running: no second server
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok", "framework": name}
    server.stop()
    server.stop()
    assert not server.running
    server.start()  # can be started again
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok", "framework": name}
    server.stop()


@pytest.mark.parametrize("name", APPS)
def test_taken_port_gives_a_clear_error(name):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use"):
            serve(APPS[name](), port=port)


def test_fixed_port_is_used_when_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve(fastapi_app(), port=port) as server:
        assert server.port == port
        assert requests.get(server.url + "/health", timeout=5).ok


def test_asgi_app_failing_at_start_up_reports_its_exception():
    @asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("model file is missing")
        yield

    threads = threading.active_count()
    with pytest.raises(ServerError, match="(?s)failed to start.*model file is missing"):
        serve(FastAPI(lifespan=lifespan))
    assert settled_thread_count(threads) <= threads


def test_asgi_app_that_never_finishes_starting_up_times_out_with_that_message():
    gate = Gate()

    @asynccontextmanager
    async def lifespan(app):
        gate.entered.set()
        while not gate.opened.is_set():  # start-up stuck (say, a model download) until the test opens the gate
            await asyncio.sleep(0.01)
        yield

    threads = threading.active_count()
    with pytest.raises(ServerError, match="did not start within 1 s"):
        serve(FastAPI(lifespan=lifespan), timeout=1)
    assert gate.entered.is_set()
    gate.opened.set()
    assert settled_thread_count(threads, timeout=30) <= threads  # the server thread ends once start-up returns


def test_asgi_server_whose_event_loop_is_blocked_reports_that_it_did_not_stop():
    gate = Gate()
    app = FastAPI()

    @app.get("/block")
    async def block():
        return gate.hold()  # WRONG on purpose: blocking inside async def freezes the event loop

    server = serve(app, timeout=1)
    worker = threading.Thread(target=lambda: _get_or_error(server.url + "/block"))
    worker.start()
    try:
        assert gate.entered.wait(30)
        with pytest.raises(ServerError, match="the server thread did not stop within 2 s"):
            server.stop()
        assert server.running  # still there, so the caller can try again
    finally:
        gate.opened.set()
        worker.join(30)
    port = server.port
    server.stop()
    assert not server.running and port_is_free(port)


def test_non_app_is_rejected():
    with pytest.raises(TypeError, match="is neither a WSGI nor an ASGI application"):
        serve(object())


@pytest.mark.parametrize("name", APPS)
def test_stop_during_in_flight_request_does_not_hang(name):
    gate = Gate()
    server = serve(APPS[name](gate))
    results = []
    worker = threading.Thread(target=lambda: results.append(_get_or_error(server.url + "/slow")))
    worker.start()
    assert gate.entered.wait(30)
    server.stop()  # returns although a handler is still running
    assert not gate.left.is_set() and not server.running
    gate.opened.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(results) == 1  # answered or cut off, but never left hanging


def _get_or_error(url: str) -> object:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException as exc:
        return exc


def test_200_start_stop_cycles_leak_no_threads_or_file_descriptors():
    apps = [flask_app(), fastapi_app()]
    # one warm-up cycle each so lazily created module state is not counted as a leak
    for app in apps:
        with serve(app) as server:
            requests.get(server.url + "/health", timeout=5)
    threads, fds = settled_thread_count(threading.active_count()), open_fds()
    ports = []
    for i in range(200):
        with serve(apps[i % 2]) as server, requests.Session() as session:
            assert session.get(server.url + "/health", timeout=5).status_code == 200
            ports.append(server.port)
    assert settled_thread_count(threads) <= threads
    assert open_fds() <= fds
    assert all(port_is_free(p) for p in ports[-10:])


def test_server_survives_across_notebook_cells_in_a_real_kernel():
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        cells = [
            "from course_lib.servers import serve\nfrom fastapi import FastAPI\nimport requests\n"
            "app = FastAPI()\n@app.get('/health')\ndef health():\n    return {'ok': True}\nsrv = serve(app)",
            "print(requests.get(srv.url + '/health', timeout=5).json())",
            "import asyncio\nasyncio.get_event_loop().is_running()",  # the kernel's loop is running
            "srv.stop()\nprint(srv.running)",
        ]
        outputs = [_run_cell(client, code) for code in cells]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert outputs[1] == "{'ok': True}\n"
    assert outputs[2] == "True"
    assert outputs[3] == "False\n"


def _run_cell(client, code: str) -> str:
    """Execute code in a kernel and return its stdout or result text; raise on an error."""
    reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: _collect(msg, collected))
    collected_text = "".join(collected)
    collected.clear()
    assert reply["content"]["status"] == "ok", reply["content"]
    return collected_text


collected: list[str] = []


def _collect(msg: dict, sink: list[str]) -> None:
    if msg["msg_type"] == "stream":
        sink.append(msg["content"]["text"])
    elif msg["msg_type"] == "execute_result":
        sink.append(msg["content"]["data"]["text/plain"])
    elif msg["msg_type"] == "error":
        sink.append("\n".join(msg["content"]["traceback"]))


SCRIPTS = {
    "python app.py --port {port}": (
        "flask_app.py",
        """
        import sys
        from flask import Flask
        app = Flask(__name__)
        @app.get("/health")
        def health():
            return {"served_by": "python"}
        if __name__ == "__main__":
            app.run(host="127.0.0.1", port=int(sys.argv[sys.argv.index("--port") + 1]))
        """,
    ),
    "uvicorn app:app --port {port}": (
        "asgi_app.py",
        """
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/health")
        def health():
            return {"served_by": "uvicorn"}
        """,
    ),
    "flask --app app run --port {port}": (
        "wsgi_app.py",
        """
        from flask import Flask
        app = Flask(__name__)
        @app.get("/health")
        def health():
            return {"served_by": "flask"}
        """,
    ),
}


@pytest.mark.parametrize("command", SCRIPTS)
def test_script_servers_run_as_subprocesses(command, tmp_path):
    filename, code = SCRIPTS[command]
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    with serve_script(command, cwd=tmp_path, ready_path="/health") as server:
        assert requests.get(server.url + "/health", timeout=5).json()["served_by"] == command.split()[0]
        process = server.process
        port = server.port
    assert process.poll() in (0, -signal.SIGTERM)  # SIGTERM was enough: no SIGKILL
    assert port_is_free(port)


def test_script_that_crashes_reports_its_log(tmp_path):
    (tmp_path / "app.py").write_text("raise SystemExit('cannot load model.joblib')\n")
    with pytest.raises(ServerError, match="(?s)exited with code 1.*cannot load model.joblib"):
        serve_script("python app.py", cwd=tmp_path)


def test_script_log_is_readable(tmp_path):
    filename, code = SCRIPTS["uvicorn app:app --port {port}"]
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    with serve_script("uvicorn app:app --port {port} --log-level info", cwd=tmp_path) as server:
        requests.get(server.url + "/health", timeout=5)
        assert "Uvicorn running on" in server.log()


def test_servers_left_running_are_stopped_when_python_exits():
    code = textwrap.dedent(
        """
        from fastapi import FastAPI
        from course_lib.servers import serve
        server = serve(FastAPI())
        print(server.port, flush=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert port_is_free(int(result.stdout.strip()))


# A server that records SIGTERM and ignores it, and starts a child (in its process group) that ignores it too.
STUBBORN = """
import http.server, pathlib, signal, subprocess, sys
here = pathlib.Path(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: (here / "got_sigterm").write_text("yes"))
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(600)"])
(here / "child_pid").write_text(str(child.pid))
if sys.argv[1] == "serve":
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), http.server.SimpleHTTPRequestHandler).serve_forever()
else:
    while True:  # never listens
        signal.pause()
"""


def assert_gone(pid: int) -> None:
    """The process has ended (a zombie waiting for a parent that does not reap it counts as ended)."""
    try:
        process = psutil.Process(pid)
        gone, alive = psutil.wait_procs([process], timeout=10)
        assert not alive or process.status() == psutil.STATUS_ZOMBIE, f"process {pid} is still running"
    except psutil.NoSuchProcess:
        pass


def test_stop_kills_a_script_that_ignores_sigterm_and_its_children(tmp_path):
    (tmp_path / "app.py").write_text(STUBBORN)
    server = serve_script(["python", "app.py", "serve", str(tmp_path), "{port}"], cwd=tmp_path)
    server.stop_timeout = 1.0
    process, port = server.process, server.port
    child = int((tmp_path / "child_pid").read_text())
    assert requests.get(server.url + "/app.py", timeout=5).status_code == 200
    server.stop()
    assert (tmp_path / "got_sigterm").read_text() == "yes"  # asked politely first
    assert process.returncode == -signal.SIGKILL  # then killed
    assert_gone(child)  # the whole process group, not only the server
    assert not server.running and port_is_free(port)


def test_a_script_that_never_answers_times_out_and_is_killed(tmp_path):
    (tmp_path / "app.py").write_text(STUBBORN)
    server = ScriptServer(["python", "app.py", "wait", str(tmp_path)], cwd=tmp_path, timeout=5)
    server.stop_timeout = 1.0
    with pytest.raises(ServerError, match="the server did not answer within 5 s"):
        server.start()
    assert (tmp_path / "got_sigterm").read_text() == "yes"
    assert_gone(int((tmp_path / "child_pid").read_text()))
    assert server.process is None and not server.running


# A Python process that starts `http.server` through serve_script inside a function, keeps only the port and the
# child's pid, and drops the handle; then it either exits normally or waits to be killed.
DROPPED_HANDLE = textwrap.dedent(
    """
    import gc, sys, time
    from course_lib.servers import serve_script

    def start() -> tuple[int, int]:
        server = serve_script(["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"], ready_path="/")
        return server.port, server.process.pid

    port, pid = start()
    gc.collect()
    print(port, pid, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    """
)


def _port_is_free_soon(port: int, timeout: float = 10.0) -> bool:
    """Poll until nothing listens on the port (a killed child takes a moment to be reaped)."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_dropped_script_handle_still_stops_its_server_when_python_exits(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", DROPPED_HANDLE, "exit"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    port, pid = map(int, result.stdout.split())
    assert_gone(pid)
    assert _port_is_free_soon(port)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_script_server_dies_with_its_parent_when_the_parent_is_killed(tmp_path):
    """A Jupyter "Restart kernel" SIGKILLs the kernel: atexit never runs, the child must still end."""
    parent = subprocess.Popen(
        [sys.executable, "-c", DROPPED_HANDLE, "wait"], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        port, pid = map(int, parent.stdout.readline().split())
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        parent.kill()
        parent.wait(10)
        assert_gone(pid)
        assert _port_is_free_soon(port)
    finally:
        parent.kill()
        parent.stdout.close()
