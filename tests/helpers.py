"""Small helpers for the tests: resource counts for leak checks."""

from __future__ import annotations

import os
import threading
import time


def open_fds() -> int:
    """Number of file descriptors this process has open (Linux/macOS)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return len(os.listdir(folder))
    raise RuntimeError("cannot count file descriptors on this platform")


def settled_thread_count(baseline: int, timeout: float = 5.0) -> int:
    """Thread count once short-lived threads (request handlers) have finished, or after timeout."""
    deadline = time.monotonic() + timeout
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count()
