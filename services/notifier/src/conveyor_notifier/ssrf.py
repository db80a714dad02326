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


# Special-purpose ranges (IANA registries, RFC 6890 and successors), denied by
# name whatever the Python version's ``is_global`` thinks of them. First match wins.
DENIED: tuple[tuple[str, Network], ...] = tuple(
    (name, ipaddress.ip_network(cidr))
    for name, cidr in (
        ("this-network", "0.0.0.0/8"),
        ("private-use", "10.0.0.0/8"),
        ("shared-address-space (carrier-grade NAT)", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local (cloud metadata)", "169.254.0.0/16"),
        ("private-use", "172.16.0.0/12"),
        ("ietf-protocol-assignments", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("6to4-relay-anycast", "192.88.99.0/24"),
        ("private-use", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("nat64", "64:ff9b::/96"),
        ("nat64-local", "64:ff9b:1::/48"),
        ("discard-only", "100::/64"),
        ("ietf-protocol-assignments", "2001::/23"),
        ("documentation", "2001:db8::/32"),
        ("unique-local (includes cloud metadata fd00:ec2::254)", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
    )
)


def forbidden_reason(address: IPAddress) -> str | None:
    """The name of the rule that denies ``address``, or ``None`` if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 carried inside IPv6 (mapped, 6to4, Teredo) is judged as IPv4.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return forbidden_reason(embedded)
    for name, network in DENIED:
        if address.version == network.version and address in network:
            return name
    # The standard library's view as a second opinion (newer registries).
    checks = (
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
            raise ResolutionError(f"cannot resolve {host!r} ({exc.strerror})") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
    if not addresses:
        raise ResolutionError(f"{host!r} resolved to no address")
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None and not any(address in net for net in allowed):
            # The rule, not the address: the answer must not map internal DNS.
            raise DestinationRefusedError(
                f"{host} resolves to a {reason} address, not a public one; "
                "CONVEYOR_NOTIFY_ALLOWED_NETWORKS can admit it"
            )
    return Target(url=url, address=addresses[0])
