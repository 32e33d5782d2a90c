"""A fault-injecting TCP proxy on loopback: the machine has no netem, so network faults are made
here, between the tool and the server under test.

Each accepted connection gets a `Fault` from the plan (a callable: connection number -> Fault),
applied to the client -> server direction (uploads) or, with `down`, the other one: pass through, delay every block, cut
(close both sides) after N bytes, reset (RST) after N bytes, or flip one byte at offset N.

    with FaultProxy(target_port, plan=lambda n: Fault("cut", after=300_000), budget=3) as proxy:
        ... endpoint http://127.0.0.1:{proxy.port} ...
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

BLOCK = 64 * 1024


@dataclass(frozen=True)
class Fault:
    kind: str = "pass"      # pass | delay | cut | reset | flip
    after: int = 0          # bytes from the client before the fault strikes (cut, reset, flip)
    delay: float = 0.0      # seconds per block (delay)
    down: bool = False      # strike the server -> client direction (downloads) instead


class FaultProxy:
    def __init__(self, target_port: int, *, plan: Callable[[int], Fault] = lambda n: Fault(),
                 target_host: str = "127.0.0.1", budget: int | None = None):
        self.target = (target_host, target_port)
        self.plan = plan
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.faults_struck = 0
        self.budget = budget  # at most this many faults strike in all (None: no limit)
        self.lock = threading.Lock()
        self.closing = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                number = self.connections
                self.connections += 1
            server = socket.create_connection(self.target)
            fault = self.plan(number)
            up, down = (Fault(), fault) if fault.down else (fault, Fault())
            threading.Thread(target=self._pump, args=(client, server, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, down), daemon=True).start()

    def _strike(self) -> bool:
        """Take one fault from the budget; False once it is spent (the fault passes instead)."""
        with self.lock:
            if self.budget is not None and self.faults_struck >= self.budget:
                return False
            self.faults_struck += 1
            return True

    def _pump(self, src: socket.socket, dst: socket.socket, fault: Fault) -> None:
        sent = 0
        try:
            while data := src.recv(BLOCK):
                if fault.kind == "delay":
                    time.sleep(fault.delay)
                elif fault.kind in ("cut", "reset") and sent + len(data) > fault.after and self._strike():
                    dst.sendall(data[:max(fault.after - sent, 0)])
                    if fault.kind == "reset":  # SO_LINGER 0: close sends RST instead of FIN
                        for s in (src, dst):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                elif fault.kind == "flip" and sent <= fault.after < sent + len(data) and self._strike():
                    i = fault.after - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            # shutdown() first: close() alone neither wakes the other direction's thread blocked
            # in recv() nor sends the FIN while that thread still holds the socket.
            for s in (src, dst):
                for end in (lambda s=s: s.shutdown(socket.SHUT_RDWR), s.close):
                    try:
                        end()
                    except OSError:
                        pass
