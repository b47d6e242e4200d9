"""AES-256-GCM keyring for secrets at rest.

Stored form: ``v1:<key_id>:<base64url(nonce || ciphertext+tag)>``. The key id lets old values
decrypt after a rotation; new values always use the primary (first) key. The associated data
binds a ciphertext to its table, column and tenant, so a value copied to another row or tenant
fails to decrypt instead of leaking.

``CONEXOES_ENCRYPTION_KEYS`` is a comma-separated list of ``key_id:base64key`` (32-byte keys),
primary first. With none configured, a development key is created once under the data folder.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_log = logging.getLogger(__name__)
_PREFIX = "v1"
_NONCE_BYTES = 12
PLATFORM_SCOPE = "platform"


class DecryptionError(Exception):
    """A stored secret cannot be decrypted: wrong row, wrong tenant, unknown key or tampering."""


@dataclass(frozen=True)
class SecretContext:
    """Where a secret lives; part of the authenticated data."""

    table: str
    column: str
    tenant_id: uuid.UUID | str | None

    def associated_data(self) -> bytes:
        scope = str(self.tenant_id) if self.tenant_id is not None else PLATFORM_SCOPE
        return f"{self.table}\x1f{self.column}\x1f{scope}".encode()


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for key_id, key in keys:
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256)")
            if ":" in key_id or not key_id:
                raise ValueError(f"invalid key id {key_id!r}")
        self._primary_id = keys[0][0]
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self._raw = dict(keys)

    @property
    def primary_key_id(self) -> str:
        return self._primary_id

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        keys: list[tuple[str, bytes]] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, _, encoded = item.partition(":")
            keys.append((key_id, _b64decode(encoded)))
        return cls(keys)

    @classmethod
    def from_config(cls, spec: str | None, data_dir: Path) -> Keyring:
        if spec:
            return cls.parse(spec)
        return cls.parse(_development_key(data_dir))

    @staticmethod
    def generate_key_spec(key_id: str) -> str:
        return f"{key_id}:{_b64encode(secrets.token_bytes(32))}"

    def encrypt(self, plaintext: str, context: SecretContext) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._primary_id].encrypt(
            nonce, plaintext.encode(), context.associated_data()
        )
        return f"{_PREFIX}:{self._primary_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, stored: str, context: SecretContext) -> str:
        try:
            prefix, key_id, encoded = stored.split(":", 2)
        except ValueError as exc:
            raise DecryptionError("malformed secret") from exc
        if prefix != _PREFIX or key_id not in self._keys:
            raise DecryptionError(f"unknown secret format or key id {key_id!r}")
        raw = _b64decode(encoded)
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            plain = self._keys[key_id].decrypt(nonce, sealed, context.associated_data())
        except InvalidTag as exc:
            raise DecryptionError("secret does not belong to this row or tenant") from exc
        return plain.decode()

    def derived_key(self, purpose: str, key_id: str | None = None) -> tuple[str, bytes] | None:
        """A 32-byte key for `purpose` (e.g. keyed fingerprints), derived with HKDF-SHA256 from
        key `key_id` (default: the primary), so no second secret needs configuring. Returns
        (key id, key), or None when `key_id` is not in the ring (rotated away).
        """
        chosen = self._primary_id if key_id is None else key_id
        raw = self._raw.get(chosen)
        if raw is None:
            return None
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return chosen, hkdf.derive(raw)

    def needs_rotation(self, stored: str) -> bool:
        return stored.split(":", 2)[1:2] != [self._primary_id]


def development_key_spec(data_dir: Path) -> str:
    """The development key spec kept in the data folder (created once, mode 0600): what
    `make run` hands its children as CONEXOES_ENCRYPTION_KEYS."""
    return _development_key(data_dir)


def _development_key(data_dir: Path) -> str:
    path = data_dir / "dev-encryption-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = Keyring.generate_key_spec("dev1")
    # O_EXCL: two processes starting together must agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(spec)
    _log.warning("no CONEXOES_ENCRYPTION_KEYS set: created a development key at %s", path)
    return spec


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
