"""AES-256-GCM encryption at rest with a rotating keyring.

Every value gets a fresh random 96-bit nonce and is stored as
`nonce ‖ ciphertext ‖ tag` next to the id of the key that sealed it. The
associated data binds a value to where it lives; `broker.store.sealing` says
what each value is bound to. The first key of `BROKER_ENCRYPTION_KEYS` encrypts; all of
them decrypt, so keys rotate by prepending a new one, without rewriting rows.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.errors import ConfigError, DecryptionError, UnknownKeyError

__all__ = ["Keyring", "Sealed", "generate_key_spec"]

_NONCE_BYTES = 12
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    blob: bytes


class Keyring:
    """Named AES-256-GCM keys; the primary one encrypts, every one decrypts."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("the keyring needs at least one key")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if len(key) != _KEY_BYTES:
                raise ConfigError(f"key {key_id!r} must be {_KEY_BYTES} bytes, got {len(key)}")
            if key_id in self._ciphers:
                raise ConfigError(f"key id {key_id!r} appears twice")
            self._ciphers[key_id] = AESGCM(key)
        self.primary_id = keys[0][0]
        self._primary = self._ciphers[self.primary_id]

    @classmethod
    def from_spec(cls, spec: str) -> Keyring:
        """Parse `id:base64key,id:base64key,...` (the first one encrypts)."""
        keys: list[tuple[str, bytes]] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id or not encoded:
                raise ConfigError("BROKER_ENCRYPTION_KEYS must look like 'id:base64key,...'")
            if not key_id.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"key id {key_id!r} must be letters, digits, '-' or '_'")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"key {key_id!r} is not valid base64") from exc
            keys.append((key_id, key))
        return cls(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def encrypt(self, plaintext: bytes, aad: bytes) -> Sealed:
        """Seal `plaintext` under the primary key, bound to `aad`."""
        nonce = os.urandom(_NONCE_BYTES)
        return Sealed(self.primary_id, nonce + self._primary.encrypt(nonce, plaintext, aad))

    def decrypt(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Open a sealed value; raise rather than ever return unauthenticated bytes."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(f"no key with id {key_id!r} in the keyring")
        if len(blob) < _NONCE_BYTES + 16:
            raise DecryptionError("ciphertext is too short to be valid")
        try:
            return cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError(
                f"ciphertext failed authentication for {aad.decode(errors='replace')!r}"
                " (tampered, or moved from another row)"
            ) from exc


def generate_key_spec(key_id: str = "k1") -> str:
    """A fresh keyring spec with one random 256-bit key."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()}"
