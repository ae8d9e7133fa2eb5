"""`BROKER_INTEGRATION_ALLOW`: the hosts and networks integrations may reach anyway.

A setting's value type, parsed when `Settings` is built so a malformed list
fails at start; the integration policy (`broker.integrations.policy`) asks it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["Allowlist", "IpAddress", "IpNetwork"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Allowlist:
    """`BROKER_INTEGRATION_ALLOW`: host names, socket directories and networks let through."""

    names: frozenset[str]
    networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, spec: str) -> Allowlist:
        """A comma list such as `127.0.0.1, 10.0.0.0/8, db.internal, /run/pg`; ValueError if bad."""
        names: set[str] = set()
        networks: list[IpNetwork] = []
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if any(char.isspace() for char in entry):
                    raise ValueError(f"{entry!r} is neither a host nor a network") from None
                names.add(entry.lower().rstrip("/") or "/")
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip("/") in self.names

    def allows_address(self, address: IpAddress) -> bool:
        return any(address in network for network in self.networks)
