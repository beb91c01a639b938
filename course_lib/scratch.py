"""Temporary folders and files that carry the id of the process that made them.

A process that is killed runs no clean-up: nbval stops its kernels with SIGKILL, and so does a Jupyter kernel that
does not answer a restart. What such a process left in the temporary directory (an exported ResNet-50 is about
100 MB) would pile up run after run, so every new folder or file removes the ones whose process no longer runs.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path


def process_temp_dir(prefix: str) -> Path:
    """A new temporary folder named `{prefix}pid{pid}-…`, after removing the ones left by processes that ended."""
    remove_orphans(prefix)
    return Path(tempfile.mkdtemp(prefix=_owned_prefix(prefix)))


def process_temp_file(prefix: str, suffix: str = "") -> tuple[int, Path]:
    """A new temporary file (open descriptor, path) named like process_temp_dir's folders, orphans removed first."""
    remove_orphans(prefix)
    fd, name = tempfile.mkstemp(prefix=_owned_prefix(prefix), suffix=suffix)
    return fd, Path(name)


def remove_orphans(prefix: str) -> list[Path]:
    """Remove the temporary folders and files `{prefix}pid{pid}-…` whose process has ended; return what was removed."""
    owned = re.compile(re.escape(prefix) + r"pid(\d+)-")
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{glob.escape(prefix)}pid*-*"):
        match = owned.match(path.name)
        if match is None or is_running(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_running(pid: int) -> bool:
    """True when a process with this id exists (always True where that cannot be asked without a signal: Windows)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _owned_prefix(prefix: str) -> str:
    """The name prefix that marks a temporary path as this process's."""
    return f"{prefix}pid{os.getpid()}-"
