"""The network guard: every adapter asks it before opening a connection."""

from __future__ import annotations

from migrate.config import Inventory, address_refusal
from migrate.errors import UnsafeAddress


def check(inv: Inventory, address: str, what: str) -> str:
    """Return the address if the inventory allows it; refuse before any packet is sent."""
    reason = address_refusal(address, inv.networks())
    if reason:
        raise UnsafeAddress(f"{what}: {reason}")
    return address
