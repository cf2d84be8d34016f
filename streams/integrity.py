"""Authenticity of the records distillwatch writes to its own topics (issue 11, item 4).

Kafka here may be PLAINTEXT without ACLs, so anyone who can produce to ``alerts`` could
otherwise drive the suspension hook. Every ``findings``, ``alerts``, ``actions`` and
``alerts-dlq`` record we produce carries an HMAC-SHA256 in the record header ``dw-sig``
(value ``v1:<64 hex digits>``) and every consumer of ``findings`` and ``alerts`` verifies it
before acting.

The MAC covers the topic name, the key and the value, each length-prefixed, so:
- a finding (or an action, or a DLQ record) cannot be replayed as an alert: its topic differs;
- a signature cannot be moved to another key (alert id) or a value altered by one byte;
- the boundary between key and value cannot be shifted (length prefixes).

This does not replace Kafka SASL/ACLs (docs/deployment.md): it makes a forged record
harmless once it is read, it does not stop anyone from writing it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.config import Config

__all__ = ["SIG_HEADER", "RecordSigner", "header_value", "signer_for"]

log = logging.getLogger(__name__)

SIG_HEADER = "dw-sig"
_VERSION = b"v1:"
_KEY_FILE = "record-secret.key"
_MIN_SECRET = 16  # bytes; a shorter key is a typo, not a secret


def _mac_input(topic: str, key: bytes | None, value: bytes) -> bytes:
    """Length-prefixed (topic, key, value); a null key is distinct from an empty one."""
    t = topic.encode("utf-8")
    parts = [struct.pack(">I", len(t)), t]
    if key is None:
        parts.append(b"\xff\xff\xff\xff")
    else:
        parts += [struct.pack(">I", len(key)), key]
    parts += [struct.pack(">I", len(value)), value]
    return b"".join(parts)


def header_value(headers: Any, name: str = SIG_HEADER) -> bytes | None:
    """The value of header ``name`` from a list of (name, value) pairs, a mapping or None.

    Two headers of that name make the record ambiguous: None (treated as unsigned)."""
    if not headers:
        return None
    items: Iterable[Any] = headers.items() if isinstance(headers, dict) else headers
    found: list[bytes] = []
    try:
        for item in items:
            k, v = item
            if isinstance(k, bytes):
                k = k.decode("utf-8", "replace")
            if k == name:
                found.append(v.encode("utf-8") if isinstance(v, str) else bytes(v))
    except (TypeError, ValueError):
        return None
    return found[0] if len(found) == 1 else None


class RecordSigner:
    """Signs and verifies internal records with one shared worker secret."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) < _MIN_SECRET:
            raise ValueError(f"record secret must be at least {_MIN_SECRET} bytes")
        self._secret = bytes(secret)

    def signature(self, topic: str, key: bytes | None, value: bytes) -> bytes:
        """The header value ``v1:<hex>`` for this record."""
        mac = hmac.new(self._secret, _mac_input(topic, key, value), hashlib.sha256)
        return _VERSION + mac.hexdigest().encode("ascii")

    def headers(self, topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        """Kafka record headers carrying the signature."""
        return [(SIG_HEADER, self.signature(topic, key, value))]

    def verify(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> bool:
        """True only for a well-formed ``dw-sig`` header that matches; never raises.

        A missing, duplicated, truncated, non-hex or non-ASCII header is simply False, so the
        caller can dead-letter the record instead of crashing on it."""
        try:
            got = header_value(headers)
            if got is None or not isinstance(value, bytes | bytearray):
                return False
            if key is not None and not isinstance(key, bytes | bytearray):
                return False
            want = self.signature(topic, None if key is None else bytes(key), bytes(value))
            # compare_digest on bytes of any content is constant-time and never raises.
            return hmac.compare_digest(bytes(got), want)
        except Exception:  # a verifier that raises would be a crash vector
            return False

    def reason(self, headers: Any) -> str:
        """Why verification failed, for the DLQ record: ``missing_signature`` when no header
        is present, else ``bad_signature``."""
        return "missing_signature" if header_value(headers) is None else "bad_signature"


def _generated_secret(data_dir: str) -> bytes:
    """A random key kept under ``data_dir`` so a restarted single worker keeps its key."""
    path = Path(data_dir) / _KEY_FILE
    try:
        text = path.read_text().strip()
        if len(text) >= 2 * _MIN_SECRET:
            return bytes.fromhex(text)
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # O_EXCL + 0600 from the start: the key is never world-readable, not even briefly.
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    os.replace(tmp, path)
    return key


def signer_for(cfg: Config) -> RecordSigner:
    """The signer from ``worker.record_secret`` / ``record_secret_file``, else a generated key.

    A generated key is per data_dir: fine for one worker (and the demo), wrong for several,
    because each would reject the others' records. Hence the WARNING."""
    w = cfg.worker
    secret: str | None = None
    if w.record_secret is not None:
        secret = w.record_secret.get_secret_value()
    elif w.record_secret_file is not None:
        secret = Path(w.record_secret_file).read_text().strip()
    if secret:
        return RecordSigner(secret.encode("utf-8"))
    log.warning(
        "worker.record_secret is not set: using a random key stored in %s; multi-worker "
        "deployments must set worker.record_secret (every worker must share it)",
        Path(w.data_dir) / _KEY_FILE,
    )
    return RecordSigner(_generated_secret(w.data_dir))
