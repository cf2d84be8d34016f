"""Console start-up and the trusted-header mode behind an OIDC proxy."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from streams.console.auth import hash_password, verify_password
from tests.conftest import isolated_topics
from tests.console.harness import ConsoleProcess


def _get(url: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_hash_password_prints_a_hash_that_verifies() -> None:
    out = subprocess.run([sys.executable, "-m", "streams.cli", "console", "--hash-password"],
                         input="s3cret-passphrase\n", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    h = out.stdout.strip()
    assert h.startswith("scrypt$32768$8$1$") and "s3cret" not in h
    assert verify_password("s3cret-passphrase", h)
    assert not verify_password("s3cret-passphrasE", h)
    assert not verify_password("x", "scrypt$1$1$1$$")  # malformed: False, never raises
    assert hash_password("same") != hash_password("same")  # salted


def test_password_mode_without_users_refuses_to_start(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from streams.cli import main

    monkeypatch.setenv("DISTILLWATCH_WORKER__DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DISTILLWATCH_CONFIG", raising=False)
    assert main(["console"]) == 2
    err = capsys.readouterr().err
    assert "no console.users configured" in err and "Traceback" not in err


@pytest.mark.integration
def test_header_mode_trusts_the_proxy_header_and_maps_approvers(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, env = isolated_topics()
    console = ConsoleProcess(broker.url, tmp_path, {
        **env, "DISTILLWATCH_CONSOLE__AUTH": "header",
        "DISTILLWATCH_CONSOLE__APPROVERS": "boss,deputy"})
    try:
        status, body, headers = _get(console.url, {})
        assert status == 401 and "X-Forwarded-User" in body
        status, body, headers = _get(console.url, {"X-Forwarded-User": "intern"})
        assert status == 200 and "intern" in body and "role-viewer" in body
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        status, body, _ = _get(console.url, {"X-Forwarded-User": "deputy"})
        assert status == 200 and "role-approver" in body
        # No login page in header mode: the proxy is the login.
        status, _, _ = _get(console.url + "login", {})
        assert status == 401
    finally:
        console.stop()
