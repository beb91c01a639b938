"""A harmless pickle payload that shows loading a pickle runs code, and safe-loading helpers."""

from __future__ import annotations

import pickle
from typing import Any


class PrintOnLoad:
    """Harmless demo payload: unpickling it calls print(message) — any other function could be called instead."""

    def __init__(self, message: str = "⚠️ this line was printed by pickle.load — a pickle can run code") -> None:
        self.message = message

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Tell pickle to rebuild this object by calling print(message)."""
        return (print, (self.message,))


def payload_bytes(message: str | None = None) -> bytes:
    """Pickled bytes that call print(message) when loaded (the file does not need this class to load)."""
    return pickle.dumps(PrintOnLoad() if message is None else PrintOnLoad(message))
