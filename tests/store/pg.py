"""A throw-away PostgreSQL server for the tests: Debian's postgresql package, a cluster in
a temporary directory, on a free port on 127.0.0.1, trust authentication for one user.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user the
package creates (``runuser``); as anyone else it belongs to the caller.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from streams.broker import free_port

__all__ = ["PostgresServer", "pg_bin"]


def pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` — a running server, removed on exit."""

    def __init__(self) -> None:
        b = pg_bin()
        if b is None:
            raise RuntimeError("PostgreSQL is not installed: `make test` installs the Debian "
                               "package postgresql (apt-get install postgresql)")
        self.bin = b
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dw-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://dw@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=60)

    def __enter__(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "dw", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        self.start()
        return self

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        import psycopg

        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                  "-l", str(self.dir / "server.log"), "start")
        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=dw dbname=postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: an outage, as far as clients can tell. ``fast`` flushes what was
        committed (this server runs with synchronous_commit=off, so ``immediate`` may lose
        the last commits, which no production server would)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
