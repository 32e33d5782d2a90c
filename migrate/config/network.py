"""The network policy: which addresses the toolkit may contact.

Pure: turning a name into addresses is I/O, so the caller hands in a resolver (the guard's, in
`migrate.adapters.guard`, which asks it again before every connection).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A name -> every address it resolves to, or None when it does not resolve.
Resolver = Callable[[str], "set[str] | None"]


def parse_networks(networks: list[str]) -> list[Network]:
    return [ipaddress.ip_network(n) for n in networks]


def is_literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def address_refusal(address: str, networks: list[Network], resolve: Resolver) -> str | None:
    """Why an address may not be contacted, or None. A name must resolve, and every address
    it resolves to must be inside the allowed networks: unresolvable fails closed."""
    if is_literal(address):
        ips = {ipaddress.ip_address(address)}
    else:
        found = resolve(address)
        if not found:
            return f"'{address}' does not resolve; refused"
        ips = {ipaddress.ip_address(a) for a in found}
    outside = sorted(str(ip) for ip in ips if not any(ip in n for n in networks))
    if outside:
        return f"address {address} ({', '.join(outside)}) is outside the allowed networks {_nets(networks)}"
    return None


def _nets(networks: list[Network]) -> str:
    return ", ".join(str(n) for n in networks)
