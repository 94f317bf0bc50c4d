"""The address of the client behind a request: the peer, or what a trusted proxy says in X-Forwarded-For.

Only a proxy on MLC_TRUSTED_PROXIES is believed (anyone else could write any address into the header):
from the right, each hop that is itself a trusted proxy is skipped, and the first one that is not is the
client. With no trusted proxies the peer address is the client, whatever the header says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(raw: str) -> tuple[Network, ...]:
    """MLC_TRUSTED_PROXIES's networks (already checked by Settings.from_env)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    peer = request.remote or "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
