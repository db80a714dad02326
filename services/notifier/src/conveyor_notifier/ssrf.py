"""SSRF guard: webhook destinations must resolve to public addresses only.

The host is resolved once, every address it resolves to is checked, and the
request then goes to a checked address (the URL keeps its name for ``Host``
and TLS SNI/verification), so a DNS answer that changes between the check and
the connection (rebinding) cannot slip a private address in. Addresses inside
``CONVEYOR_NOTIFY_ALLOWED_NETWORKS`` are admitted anyway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefusedError(Exception):
    """The destination is not allowed (permanent: retrying will not help)."""


class ResolutionError(Exception):
    """The host name did not resolve (may be temporary)."""


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "site-local"
        # IPv4 carried inside IPv6 (mapped, 6to4, Teredo) is judged as IPv4.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return forbidden_reason(embedded)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """Where to connect: a checked address for the URL's host."""

    url: httpx.URL
    address: IPAddress

    def pinned_url(self) -> httpx.URL:
        host = str(self.address)
        return self.url.copy_with(host=host)

    def request_extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}

    def host_header(self) -> str:
        default = {"http": 80, "https": 443}[self.url.scheme]
        port = self.url.port
        host = self.url.host if ":" not in self.url.host else f"[{self.url.host}]"
        return host if port in (None, default) else f"{host}:{port}"


async def resolve(url: httpx.URL, allowed: Sequence[Network]) -> Target:
    """Check ``url`` and pick the address to connect to, or raise."""
    if url.scheme not in ("http", "https"):
        raise DestinationRefusedError(f"scheme {url.scheme!r} is not http or https")
    host = url.host
    if not host:
        raise DestinationRefusedError("URL has no host")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise ResolutionError(f"cannot resolve {host!r}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
    if not addresses:
        raise ResolutionError(f"{host!r} resolved to no address")
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None and not any(address in net for net in allowed):
            raise DestinationRefusedError(
                f"{host} resolves to {address}, which is {reason}; "
                "add it to CONVEYOR_NOTIFY_ALLOWED_NETWORKS to allow it"
            )
    return Target(url=url, address=addresses[0])
