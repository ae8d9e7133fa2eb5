"""The keyring: sealing, binding to a row, rotation, and clear failures."""

from __future__ import annotations

import base64

import pytest

from broker.errors import ConfigError, DecryptionError, UnknownKeyError
from broker.store.crypto import Keyring, generate_key_spec
from broker.store.sealing import event_aad


def test_round_trip_with_random_nonce_per_value() -> None:
    ring = Keyring.from_spec(generate_key_spec("k1"))
    a = ring.encrypt(b"hello", b"r:1")
    b = ring.encrypt(b"hello", b"r:1")
    assert a.key_id == "k1"
    assert a.blob != b.blob  # fresh nonce every time
    assert b"hello" not in a.blob
    assert ring.decrypt(a.key_id, a.blob, b"r:1") == b"hello"


def test_other_associated_data_fails() -> None:
    ring = Keyring.from_spec(generate_key_spec())
    sealed = ring.encrypt(b"hello", event_aad("run-a", 1))
    with pytest.raises(DecryptionError):
        ring.decrypt(sealed.key_id, sealed.blob, event_aad("run-a", 2))
    with pytest.raises(DecryptionError):
        ring.decrypt(sealed.key_id, sealed.blob, event_aad("run-b", 1))


def test_flipped_bit_fails() -> None:
    ring = Keyring.from_spec(generate_key_spec())
    sealed = ring.encrypt(b"hello", b"x")
    tampered = bytearray(sealed.blob)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        ring.decrypt(sealed.key_id, bytes(tampered), b"x")
    with pytest.raises(DecryptionError):
        ring.decrypt(sealed.key_id, sealed.blob[:10], b"x")


def test_unknown_key_id_fails() -> None:
    ring = Keyring.from_spec(generate_key_spec("k1"))
    with pytest.raises(UnknownKeyError):
        ring.decrypt("k9", ring.encrypt(b"x", b"").blob, b"")


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old = generate_key_spec("old")
    sealed_old = Keyring.from_spec(old).encrypt(b"v", b"a")
    ring = Keyring.from_spec(generate_key_spec("new") + "," + old)
    assert ring.key_ids == ("new", "old")
    assert ring.encrypt(b"v", b"a").key_id == "new"
    assert ring.decrypt("old", sealed_old.blob, b"a") == b"v"


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nokey",
        "k1:",
        ":abc",
        "k1:not-base64!!",
        "k1:" + base64.b64encode(b"short").decode(),
        "k 1:" + base64.b64encode(bytes(32)).decode(),
        generate_key_spec("dup") + "," + generate_key_spec("dup"),
    ],
)
def test_malformed_key_lists_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError):
        Keyring.from_spec(spec)
