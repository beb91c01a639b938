"""Run a command that ends with the process that started it (Linux): `python die_with_parent.py PARENT_PID CMD…`.

A Jupyter "Restart kernel" kills the kernel without running atexit, which would leave a server started with
`serve_script` running and holding its port. This launcher asks Linux to send SIGTERM to the command when its
parent dies (prctl PR_SET_PDEATHSIG, kept across exec), then becomes the command. The signal follows the
parent *thread*: start scripts from a thread that lives as long as the server (a notebook's cells run on the main
thread). servers.py uses it on Linux only. Run as a file, not `-m`, so that nothing of course_lib is imported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    """Arrange the parent-death signal, then replace this process with the command."""
    parent, command = int(argv[0]), argv[1:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
