"""Who is at the console: password logins (scrypt hashes), or a trusted header set by an
OIDC proxy; signed session cookies; CSRF tokens; roles.

Passwords are hashed with :func:`hashlib.scrypt` (memory-hard, in the standard library):
``scrypt$N$r$p$<salt b64>$<hash b64>``. Sessions are a signed cookie, not server state, so
a restart with the same ``console.session_secret`` keeps people logged in.

>>> h = hash_password("correct horse", n=2**10)
>>> verify_password("correct horse", h), verify_password("Correct horse", h)
(True, False)
>>> s = Sessions(b"k" * 32, ttl_s=60)
>>> tok = s.issue("alice", "approver", now=0.0)
>>> s.read(tok, now=30.0)["user"], s.read(tok, now=61.0)
('alice', None)
>>> s.read(tok[:-1] + ("0" if tok[-1] != "0" else "1"), now=1.0) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import orjson

__all__ = ["ROLES", "Sessions", "hash_password", "verify_password"]

ROLES = ("viewer", "approver")
_DUMMY = None  # a hash to verify against for unknown users (same time as a known one)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, *, n: int = 2**15, r: int = 8, p: int = 1) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; never raises (a malformed hash is False)."""
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt" or int(n) > 2**20:
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=2**27, dklen=len(_unb64(want)))
        return hmac.compare_digest(got, _unb64(want))
    except (ValueError, TypeError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of one verification, so an unknown user name answers as slowly as a
    wrong password (no user enumeration by timing)."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password("x")
    verify_password(password, _DUMMY)


class Sessions:
    """Signed, expiring session tokens: ``<payload b64>.<HMAC-SHA256 b64>``.

    The payload holds the user, the role, the expiry and the session's CSRF token."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._key = hashlib.sha256(b"dw-console-session\0" + secret).digest()
        self.ttl_s = ttl_s

    def _mac(self, data: bytes) -> str:
        return _b64(hmac.new(self._key, data, hashlib.sha256).digest())

    def issue(self, user: str, role: str, *, now: float | None = None) -> str:
        now = time.time() if now is None else now
        payload = orjson.dumps({"user": user, "role": role, "exp": now + self.ttl_s,
                                "csrf": secrets.token_urlsafe(24)})
        return f"{_b64(payload)}.{self._mac(payload)}"

    def read(self, token: str | None, *, now: float | None = None) -> dict[str, Any] | None:
        """The session in ``token`` if it is authentic and not expired, else None."""
        if not token or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        try:
            payload = _unb64(body)
        except ValueError:
            return None
        if not hmac.compare_digest(self._mac(payload), mac):
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        now = time.time() if now is None else now
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int | float) or (
            data["exp"] < now or data.get("role") not in ROLES
        ):
            return None
        return data

    def header_csrf(self, user: str) -> str:
        """Header mode has no cookie session: the CSRF token is derived from the user."""
        return self._mac(b"csrf\0" + user.encode())

    def login_token(self, nonce: str | None = None) -> tuple[str, str]:
        """(cookie value, form value) for the login form: a double-submit pair. An existing
        cookie ``nonce`` is kept, so a second tab or a stray request that lands on the login
        page does not invalidate the form already shown."""
        if not nonce or not 16 <= len(nonce) <= 64:
            nonce = secrets.token_urlsafe(16)
        return nonce, self._mac(b"login\0" + nonce.encode())

    def check_login_token(self, cookie: str | None, form: str | None) -> bool:
        if not cookie or not form:
            return False
        return hmac.compare_digest(self._mac(b"login\0" + cookie.encode()), form)
