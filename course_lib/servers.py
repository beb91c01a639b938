"""Run web apps without blocking a notebook cell.

- ``serve(app)`` runs a Flask (WSGI) app with Werkzeug, or a FastAPI/Starlette (ASGI) app with uvicorn,
  in a background thread on 127.0.0.1 and an OS-chosen port.
- ``serve_script(command)`` runs a stand-alone server (``python app.py``, ``uvicorn app:app``,
  ``flask --app app run``) as a subprocess.

Both return a handle with ``.url``, ``.port``, ``.start()``, ``.stop()``; it works as a context manager
and as a long-lived object across cells. Every started server is kept until ``stop()``, even when its handle is
dropped; servers still running when Python exits are stopped, and on Linux a script server also ends when the
process that started it is killed (a Jupyter "Restart kernel" skips atexit).
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from course_lib.scratch import process_temp_file

__all__ = [
    "ServerError",
    "PortInUseError",
    "Server",
    "ThreadServer",
    "WSGIServer",
    "ASGIServer",
    "ScriptServer",
    "serve",
    "serve_script",
]

# Every started server, held until stop(): a handle the caller dropped must not leave its server unstoppable.
_LIVE: set[Server] = set()
# Wraps script servers so they end with this process even when it is killed (course_lib/die_with_parent.py).
_DIE_WITH_PARENT = Path(__file__).with_name("die_with_parent.py")


class ServerError(RuntimeError):
    """A server could not start, or stopped unexpectedly."""


class PortInUseError(ServerError):
    """The requested host and port are already taken by another program."""


def _stop_all_servers() -> None:
    """Stop every server still running (registered with atexit)."""
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_stop_all_servers)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Bind and listen on host:port (0 = the OS picks a free port); PortInUseError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say so; without it, uvicorn's
    # separate header/body writes meet delayed ACKs and every keep-alive request waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"{host}:{port} is already in use; stop the other server, or use port=0 "
                "to let the OS choose a free port"
            ) from None
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free right now (for subprocesses that need a number up front)."""
    with bind_socket(host, 0) as sock:
        return sock.getsockname()[1]


class Server:
    """Common handle: url, port, start/stop, context manager."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL such as http://127.0.0.1:50123."""
        if self.port is None:
            raise ServerError("the server is not running; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server is serving."""
        raise NotImplementedError

    def start(self) -> Server:
        """Start the server (no-op if it is running) and return self."""
        if not self.running:
            self._start()
            _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Stop the server and free its port; calling it twice is harmless."""
        self._stop()
        _LIVE.discard(self)
        self.port = None

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "stopped"
        return f"<{type(self).__name__} {where}>"


def _is_wsgi(app: Any) -> bool:
    """Guess whether app is a WSGI app (Flask) rather than an ASGI app (FastAPI/Starlette)."""
    if hasattr(app, "wsgi_app"):
        return True
    import inspect

    if not callable(app):
        raise TypeError(f"{app!r} is neither a WSGI nor an ASGI application")
    call = app if inspect.isfunction(app) else type(app).__call__
    return not inspect.iscoroutinefunction(call)


class _LogCapture(logging.Handler):
    """Collect log records emitted while a server starts, for the error message."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class ThreadServer(Server):
    """An app served from a daemon thread of this process; WSGIServer and ASGIServer say how."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 15.0,
        log_level: str = "warning",
    ) -> None:
        super().__init__(host, port)
        self.app = app
        self.timeout = timeout
        self.log_level = log_level
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._sock: socket.socket | None = None

    @property
    def running(self) -> bool:
        """True while the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        self._sock = bind_socket(self.host, self.requested_port)
        self.port = self._sock.getsockname()[1]
        try:
            self._serve_in_thread()
        except BaseException as exc:
            try:
                self._stop()
            except ServerError as stop_error:  # keep the start-up error: it says what went wrong
                exc.add_note(f"then stopping failed too: {stop_error}")
            self.port = None
            raise

    def _serve_in_thread(self) -> None:
        """Create self._server on self._sock and start self._thread serving it; return once it is ready."""
        raise NotImplementedError

    def _ask_to_stop(self) -> None:
        """Make the serving thread return (it is alive); the caller joins it."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release what the server holds once its thread has ended."""

    def _stop(self) -> None:
        thread, server = self._thread, self._server
        if server is not None and thread is not None and thread.is_alive():
            self._ask_to_stop()
            if thread.is_alive():
                raise ServerError(f"the server thread did not stop within {2 * self.timeout:.0f} s")
        if server is not None:
            self._close()
        if self._sock is not None:
            self._sock.close()
        self._thread = self._server = self._sock = None


class WSGIServer(ThreadServer):
    """A WSGI app (Flask) on Werkzeug's threaded server."""

    def _serve_in_thread(self) -> None:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(self.log_level.upper())
        self._server = make_server(self.host, self.port, self.app, threaded=True, fd=self._sock.fileno())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"wsgi-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _ask_to_stop(self) -> None:
        self._server.shutdown()
        self._thread.join(self.timeout)

    def _close(self) -> None:
        self._server.server_close()


class ASGIServer(ThreadServer):
    """An ASGI app (FastAPI, Starlette) on uvicorn, with its own event loop in the thread."""

    def _serve_in_thread(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=False,
            timeout_graceful_shutdown=3,
            lifespan="auto",
        )
        self._server = uvicorn.Server(config)
        capture = _LogCapture()
        log = logging.getLogger("uvicorn.error")
        log.addHandler(capture)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._server.run(sockets=[self._sock])
            except BaseException as exc:  # noqa: BLE001 - SystemExit from uvicorn on start-up failure
                failure.append(exc)

        self._thread = threading.Thread(target=run, name=f"asgi-server-{self.port}", daemon=True)
        try:
            self._thread.start()
            deadline = time.monotonic() + self.timeout
            while not self._server.started:
                if not self._thread.is_alive():
                    detail = "\n".join(capture.messages) or (repr(failure[0]) if failure else "no message")
                    raise ServerError(f"the app failed to start:\n{detail}")
                if time.monotonic() > deadline:
                    raise ServerError(f"the app did not start within {self.timeout:.0f} s")
                time.sleep(0.01)
        finally:
            log.removeHandler(capture)

    def _ask_to_stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(self.timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(self.timeout)


def serve(app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> ThreadServer:
    """Start app (Flask/WSGI or FastAPI/ASGI) in a background thread and return its running handle.

    options go to the server class: timeout (seconds to start or stop), log_level ("warning" keeps cells quiet).
    """
    server_class = WSGIServer if _is_wsgi(app) else ASGIServer
    return server_class(app, host, port, **options).start()


_MODULE_COMMANDS = {"uvicorn", "flask", "jupyter", "gunicorn"}


def _resolve_command(command: str | Sequence[str], port: int) -> list[str]:
    """Split the command, fill in {port}, and run python/uvicorn/flask from this interpreter."""
    args = shlex.split(command) if isinstance(command, str) else list(command)
    args = [a.replace("{port}", str(port)) for a in args]
    if not args:
        raise ValueError("empty command")
    if args[0] in {"python", "python3"}:
        args[0] = sys.executable
    elif args[0] in _MODULE_COMMANDS:
        args = [sys.executable, "-m", args[0], *args[1:]]
    return args


def _die_with_parent(args: list[str]) -> list[str]:
    """The command, wrapped on Linux so that it ends when this process dies (see die_with_parent.py)."""
    if not sys.platform.startswith("linux"):
        return args
    return [sys.executable, str(_DIE_WITH_PARENT), str(os.getpid()), *args]


class ScriptServer(Server):
    """A server started as a subprocess, such as `uvicorn app:app --port {port}`."""

    stop_timeout = 10.0  # seconds stop() waits after SIGTERM before SIGKILL, and again after SIGKILL

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        timeout: float = 30.0,
    ) -> None:
        super().__init__(host, port or 0)
        self.command = command
        self.cwd = cwd
        self.env = env
        self.ready_path = ready_path
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self.process is not None and self.process.poll() is None

    def log(self, tail: int | None = None) -> str:
        """Return the subprocess's combined stdout/stderr (the last `tail` lines if given)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-tail:] if tail else lines)

    def _start(self) -> None:
        self.port = self.requested_port or free_port(self.host)
        args = _resolve_command(self.command, self.port)
        fd, self.log_path = process_temp_file("course-server-", suffix=".log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        with os.fdopen(fd, "wb") as log_file:
            self.process = subprocess.Popen(
                _die_with_parent(args),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"the server process exited with code {self.process.returncode}:\n{self.log(tail=30)}"
                )
            try:
                requests.get(self.url + self.ready_path, timeout=1)
                return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"the server did not answer within {self.timeout:.0f} s:\n{self.log(tail=30)}")
            time.sleep(0.1)

    def _stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(self.stop_timeout)
            except ProcessLookupError:
                pass
        self.process = None

    def __del__(self) -> None:
        if self.log_path is not None and not self.running:
            self.log_path.unlink(missing_ok=True)


def serve_script(command: str | Sequence[str], **options: Any) -> ScriptServer:
    """Run a server command as a subprocess ({port} is replaced by a free port) and wait until it answers.

    options go to ScriptServer: port, host, cwd, env, ready_path, timeout.
    """
    return ScriptServer(command, **options).start()
