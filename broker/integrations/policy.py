"""What an integration may reach (design 4.7), as pure decisions.

The policy is checked when an integration is registered and again before
every query (`broker/integrations/querying.py` does the I/O: resolve, connect, ask the
server about itself). Each check answers a reason to refuse, or None:

- `target_of(dsn)`: the one host and port a DSN names (a unix socket is a
  host starting with `/`, or no host at all); several hosts are refused;
- `address_refusal(...)`: no loopback, link-local, unspecified or multicast
  address and no unix socket, unless `BROKER_INTEGRATION_ALLOW` lists the
  host name, the socket directory or a network holding the address. The
  host is resolved once and the connection goes to the address checked, so
  a DNS answer cannot change between the check and the connection;
- `server_refusal(...)`: never the broker's own server, recognised by its
  system identifier (`pg_control_system()`, readable by any role), so no
  address, alias or role name reaches it;
- `role_refusal(...)`: never a role that is, or may become through its
  memberships, superuser, replication, BYPASSRLS, CREATEROLE or CREATEDB, nor
  a member of `pg_read_server_files`, `pg_write_server_files` or
  `pg_execute_server_program`.

A `managed` integration is the broker's own demo, registered by the broker
through its read-only role (`broker/integrations/demo.py`); it skips the address and
server checks, never the role check. The flag lives in the sealed
credentials and no API body can set it.

Reasons never quote the DSN: they are answered in the 422.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from broker.web.allowlist import Allowlist, IpAddress

__all__ = [
    "DANGEROUS_ROLES",
    "Allowlist",
    "Policy",
    "RoleFacts",
    "Target",
    "address_refusal",
    "role_refusal",
    "server_refusal",
    "target_of",
]

DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
"""The predefined roles that reach the server's files or programs."""

DEFAULT_PORT = 5432


@dataclass(frozen=True, slots=True)
class Target:
    """Where a DSN points: a host name or address and port, or a unix socket directory."""

    host: str
    port: int

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")


@dataclass(frozen=True, slots=True)
class RoleFacts:
    """What the server says about the connected role and every role it is a member of."""

    superuser: bool
    replication: bool
    bypass_rls: bool
    create_role: bool
    create_db: bool
    memberships: frozenset[str]


def target_of(dsn: str) -> Target | str:
    """The DSN's single host and port, or a reason to refuse it."""
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        hostspec = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "the DSN cannot be parsed"
    hosts = query.get("host", [])
    ports = query.get("port", [])
    if len(hosts) > 1 or len(ports) > 1 or "," in hostspec or any("," in h for h in hosts):
        return "an integration must name exactly one host"
    host, port_text = _split_hostspec(hostspec)
    if hosts:
        host = unquote(hosts[0])
    if ports:
        port_text = ports[0]
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        return "the DSN's port is not a number"
    if not 0 < port < 65536:
        return "the DSN's port is out of range"
    if not host:
        host = "/"  # libpq's default: a unix socket in a compiled-in directory
    return Target(host, port)


def _split_hostspec(hostspec: str) -> tuple[str, str]:
    if hostspec.startswith("["):  # [v6]:port
        inside, _, rest = hostspec[1:].partition("]")
        return inside, rest.removeprefix(":")
    host, _, port = hostspec.partition(":")
    return unquote(host), port


def address_refusal(target: Target, addresses: Iterable[IpAddress], allow: Allowlist) -> str | None:
    """Why `target`, resolved to `addresses`, may not be reached; None when it may."""
    if target.is_socket:
        if allow.allows_name(target.host):
            return None
        return "unix sockets are not allowed (see BROKER_INTEGRATION_ALLOW)"
    if allow.allows_name(target.host):
        return None
    resolved = list(addresses)
    if not resolved:
        return "the host does not resolve to any address"
    for address in resolved:
        if _internal(address) and not allow.allows_address(address):
            return (
                "loopback, link-local and unspecified addresses are not allowed "
                "(see BROKER_INTEGRATION_ALLOW)"
            )
    return None


def _internal(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
    )


def server_refusal(system_identifier: str, own_identifier: str | None) -> str | None:
    """Refuse the broker's own server, whatever address or role reached it."""
    if not system_identifier:
        return "the server does not say which server it is"
    if own_identifier is not None and system_identifier == own_identifier:
        return "the broker's own database server is not an integration"
    return None


def role_refusal(facts: RoleFacts) -> str | None:
    """Refuse a role that can do more than read the tenant's own data."""
    powers = [
        name
        for name, held in (
            ("superuser", facts.superuser),
            ("replication", facts.replication),
            ("bypassrls", facts.bypass_rls),
            ("createrole", facts.create_role),
            ("createdb", facts.create_db),
        )
        if held
    ]
    powers += sorted(facts.memberships & frozenset(DANGEROUS_ROLES))
    if powers:
        return "the role is too powerful for an integration: " + ", ".join(powers)
    return None


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy for one connection: the allow list, the broker's own server, the demo flag."""

    allow: Allowlist
    own_identifier: str | None
    managed: bool = False
