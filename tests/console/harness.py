"""A real ``distillwatch console`` subprocess for the console tests, and its users."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from streams.console.auth import hash_password
from tests.conftest import FAST_WORKER_ENV, stop_process

# Low scrypt cost: the tests log in often; production hashes use the default (2**15).
USERS = {"alice": ("approver", "alice-pass-1"), "victor": ("viewer", "victor-pass-1")}
_HASHES = {name: hash_password(pw, n=2**12) for name, (_, pw) in USERS.items()}


def users_toml() -> str:
    return "\n".join(
        f'[[console.users]]\nname = "{n}"\nrole = "{role}"\npassword_hash = "{_HASHES[n]}"\n'
        for n, (role, _) in USERS.items())


class ConsoleProcess:
    """``distillwatch console --port 0`` with its own config file; ``url`` once it listens."""

    def __init__(self, broker_url: str, tmp: Path, env: dict[str, str], *,
                 extra_toml: str = "", data_dir: Path | None = None) -> None:
        cfg = tmp / f"console-{os.getpid()}-{time.monotonic_ns()}.toml"
        cfg.write_text(users_toml() + extra_toml)
        self.log_path = tmp / "console.log"
        full = {
            **os.environ,
            "DISTILLWATCH_WORKER__RECORD_SECRET": FAST_WORKER_ENV[
                "DISTILLWATCH_WORKER__RECORD_SECRET"],
            "DISTILLWATCH_WORKER__DATA_DIR": str(data_dir or tmp / "data"),
            "DISTILLWATCH_STORE__URL": f"sqlite:///{tmp / 'console-store.db'}",
            "DISTILLWATCH_CONSOLE__SESSION_SECRET": "console-test-session-secret-0123",
            "DISTILLWATCH_SINKS__RUNBOOK_URL": "https://runbooks.example/docs/detectors.md",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "-c", str(cfg), "console", "--port", "0",
             "--broker", broker_url],
            env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30):
            self.stop()
            raise AssertionError("console did not start:\n" + self.log())
        urllib.request.urlopen(self.url + "healthz", timeout=5).read()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.match(r"console at (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self._ready.set()

    def log(self) -> str:
        return "".join(self.lines[-200:])

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]
