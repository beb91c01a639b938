"""course_lib.servers over real HTTP: Flask and FastAPI in threads, scripts as subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import asynccontextmanager

import pytest
import requests
from fastapi import FastAPI
from flask import Flask
from helpers import open_fds, settled_thread_count

from course_lib.servers import PortInUseError, ServerError, serve, serve_script


def flask_app() -> Flask:
    app = Flask("hello")

    @app.get("/health")
    def health():
        return {"status": "ok", "framework": "flask"}

    @app.get("/slow")
    def slow():
        time.sleep(0.5)
        return {"slow": True}

    return app


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok", "framework": "fastapi"}

    @app.get("/slow")
    def slow():
        time.sleep(0.5)
        return {"slow": True}

    return app


APPS = {"flask": flask_app, "fastapi": fastapi_app}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("name", APPS)
def test_serves_on_loopback_and_os_chosen_port_then_frees_it(name):
    with serve(APPS[name]()) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok", "framework": name}
        port = server.port
    assert not server.running
    assert port_is_free(port)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)


@pytest.mark.parametrize("name", APPS)
def test_long_lived_handle_start_is_idempotent_and_stop_twice_is_harmless(name):
    server = serve(APPS[name]())
    assert server.start() is server  # already running: no second server
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    server.stop()
    server.stop()
    assert not server.running
    server.start()  # can be started again
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
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


def test_non_app_is_rejected():
    with pytest.raises(TypeError):
        serve(object())


@pytest.mark.parametrize("name", APPS)
def test_stop_during_in_flight_request_does_not_hang(name):
    server = serve(APPS[name]())
    results = []
    worker = threading.Thread(target=lambda: results.append(_get_or_error(server.url + "/slow")))
    worker.start()
    time.sleep(0.15)
    started = time.monotonic()
    server.stop()
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 10
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
    assert process.poll() is not None
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
