"""Progress is a subscriber: the executor emits events, listeners print or log them."""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

Listener = Callable[[str, dict], None]


class Bus:
    def __init__(self, *listeners: Listener):
        self.listeners = list(listeners)

    def emit(self, kind: str, **data) -> None:
        for listener in self.listeners:
            listener(kind, data)


def json_lines(stream=sys.stdout) -> Listener:
    def listen(kind: str, data: dict) -> None:
        stream.write(json.dumps({"event": kind, "at": round(time.time(), 3), **data}, default=str) + "\n")
        stream.flush()
    return listen
