"""A harmless pickle payload that shows that loading a pickle runs code.

The safe ways to load a model (skops with named trusted types, torch.load with weights_only=True) are the
loaders in course_lib.serialization.formats; each Format says in untrusted_safe whether a stranger's file may be loaded.
"""

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
