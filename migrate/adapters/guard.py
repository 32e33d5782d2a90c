"""The network guard: every adapter asks it before opening a connection. Names are resolved
here, at the moment of connecting, so the policy holds for what a name means now."""

from __future__ import annotations

import socket

from migrate.config import Inventory, address_refusal
from migrate.errors import UnsafeAddress


def resolve(name: str) -> set[str] | None:
    """Every address `name` resolves to, or None when it does not resolve."""
    try:
        return {ai[4][0] for ai in socket.getaddrinfo(name, None)}
    except (socket.gaierror, UnicodeError):
        return None


def check(inv: Inventory, address: str, what: str) -> str:
    """Return the address if the inventory allows it; refuse before any packet is sent."""
    reason = address_refusal(address, inv.networks(), resolve)
    if reason:
        raise UnsafeAddress(f"{what}: {reason}")
    return address
