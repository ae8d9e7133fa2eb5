"""The integration policy's pure decisions: targets, addresses, servers, roles, caps."""

from __future__ import annotations

import ipaddress
import json

import pytest

from broker.integrations.policy import (
    Allowlist,
    RoleFacts,
    Target,
    address_refusal,
    role_refusal,
    server_refusal,
    target_of,
)
from broker.integrations.rules import capped_row

ip = ipaddress.ip_address
NOBODY = Allowlist.parse("")


@pytest.mark.parametrize(
    ("dsn", "target"),
    [
        ("postgresql://u:p@db.example.com/x", Target("db.example.com", 5432)),
        ("postgresql://u:p@10.1.2.3:6543/x", Target("10.1.2.3", 6543)),
        ("postgresql://u:p@[::1]:7000/x", Target("::1", 7000)),
        ("postgresql://u:p@/x?host=/run/pg", Target("/run/pg", 5432)),
        ("postgresql://u:p@/x?host=%2Frun%2Fpg&port=5433", Target("/run/pg", 5433)),
        ("postgresql://u:p@ignored/x?host=10.0.0.9", Target("10.0.0.9", 5432)),
        ("postgresql:///x", Target("/", 5432)),  # libpq's default socket
    ],
)
def test_a_dsn_names_one_target(dsn: str, target: Target) -> None:
    assert target_of(dsn) == target


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@a,b/x",
        "postgresql://u:p@/x?host=a&host=b",
        "postgresql://u:p@/x?host=a,b",
        "postgresql://u:p@a:notaport/x",
        "postgresql://u:p@a:70000/x",
        "postgresql://u:p@a:0/x",
    ],
)
def test_several_hosts_or_a_bad_port_are_refused_without_quoting_the_dsn(dsn: str) -> None:
    reason = target_of(dsn)
    assert isinstance(reason, str)
    assert "u:p" not in reason and "@" not in reason


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "::",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    reason = address_refusal(Target("h", 5432), [ip(address)], NOBODY)
    assert reason is not None and "BROKER_INTEGRATION_ALLOW" in reason


def test_one_internal_address_among_several_is_enough_to_refuse() -> None:
    assert address_refusal(Target("h", 5432), [ip("10.0.0.1"), ip("127.0.0.1")], NOBODY)


def test_ordinary_addresses_pass_and_nothing_resolved_is_refused() -> None:
    assert address_refusal(Target("h", 5432), [ip("10.0.0.1"), ip("203.0.113.9")], NOBODY) is None
    assert address_refusal(Target("h", 5432), [], NOBODY) is not None


def test_sockets_are_refused_unless_their_directory_is_listed() -> None:
    assert address_refusal(Target("/run/pg", 5432), [], NOBODY) is not None
    assert address_refusal(Target("/run/pg", 5432), [], Allowlist.parse("/run/pg/")) is None
    assert address_refusal(Target("/other", 5432), [], Allowlist.parse("/run/pg")) is not None


def test_the_allow_list_lets_names_and_networks_through() -> None:
    allow = Allowlist.parse(" 127.0.0.1 , 10.0.0.0/8,DB.internal, fe80::/10 ,")
    loopback = Target("127.0.0.1", 5432)
    assert address_refusal(loopback, [ip("127.0.0.1")], allow) is None
    assert address_refusal(Target("x", 1), [ip("127.0.0.2")], allow) is not None
    assert address_refusal(Target("db.internal", 1), [ip("127.0.0.5")], allow) is None
    assert address_refusal(Target("x", 1), [ip("fe80::2")], allow) is None


@pytest.mark.parametrize("spec", ["a b", "10.0.0.0/8, bad host"])
def test_a_malformed_allow_list_fails_loudly(spec: str) -> None:
    with pytest.raises(ValueError):
        Allowlist.parse(spec)


def test_the_broker_s_own_server_is_refused_by_identity() -> None:
    assert server_refusal("7713", "7713") is not None
    assert server_refusal("7714", "7713") is None
    assert server_refusal("", "7713") is not None


PLAIN = RoleFacts(False, False, False, False, False, frozenset({"tenant_readers"}))


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"superuser": True}, "superuser"),
        ({"replication": True}, "replication"),
        ({"bypass_rls": True}, "bypassrls"),
        ({"create_role": True}, "createrole"),
        ({"create_db": True}, "createdb"),
        ({"memberships": frozenset({"pg_read_server_files"})}, "pg_read_server_files"),
        ({"memberships": frozenset({"pg_write_server_files"})}, "pg_write_server_files"),
        ({"memberships": frozenset({"pg_execute_server_program"})}, "pg_execute_server_program"),
    ],
)
def test_every_power_beyond_reading_is_refused(change: dict[str, object], word: str) -> None:
    from dataclasses import replace

    assert role_refusal(PLAIN) is None
    reason = role_refusal(replace(PLAIN, **change))  # type: ignore[arg-type]
    assert reason is not None and word in reason


def test_a_long_cell_is_cut_with_a_marker_and_short_ones_are_kept() -> None:
    row, size = capped_row(["x" * 10_000, "short", 7, None], max_cell_bytes=1000)
    assert row[1:] == ["short", 7, None]
    assert isinstance(row[0], str) and row[0].endswith("…[cut: 10000 bytes]")
    assert len(json.dumps(row[0], ensure_ascii=False).encode()) <= 1000
    assert size == len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())


def test_a_cut_never_splits_a_character_and_non_strings_are_cut_as_json() -> None:
    row, _ = capped_row(["é" * 5000, list(range(5000))], max_cell_bytes=500)
    text, numbers = row
    assert isinstance(text, str) and set(text.partition("…")[0]) == {"é"}
    assert isinstance(numbers, str) and numbers.startswith("[0,1,2")
    assert capped_row([], max_cell_bytes=10) == ([], 2)


def test_settings_refuse_a_malformed_allow_list_and_parse_a_good_one() -> None:
    from pydantic import ValidationError

    from broker.web.settings import Settings

    with pytest.raises(ValidationError):
        Settings(BROKER_INTEGRATION_ALLOW="10.0.0.0/8, not a host")
    allow = Settings(BROKER_INTEGRATION_ALLOW="127.0.0.1").allowlist()
    assert allow.allows_address(ip("127.0.0.1")) and not allow.allows_address(ip("127.0.0.2"))
    assert Settings().query_max_bytes == 256 * 1024
