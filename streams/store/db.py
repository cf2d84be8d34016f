"""Opening the store: the database URL, the engine, and schema migrations (Alembic).

SQLite is the default (a file under ``worker.data_dir``: nothing to set up);
PostgreSQL is for production. ``postgresql://`` URLs are given the psycopg 3 driver, the
one installed with distillwatch.

>>> engine_url("postgresql://dw@db/alerts")
'postgresql+psycopg://dw@db/alerts'
>>> engine_url("sqlite:////var/lib/dw/alerts.db")
'sqlite:////var/lib/dw/alerts.db'
"""

from __future__ import annotations

from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event

__all__ = ["default_url", "engine_url", "migrate", "open_store"]

MIGRATIONS = Path(__file__).with_name("migrations")


def default_url(data_dir: str | Path) -> str:
    """``sqlite:///<data_dir>/alerts.db``: the default when ``store.url`` is unset."""
    return f"sqlite:///{Path(data_dir).resolve() / 'alerts.db'}"


def engine_url(url: str) -> str:
    """``url`` with the psycopg 3 driver for a bare ``postgresql://`` URL."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url.removeprefix(bare)
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL: the console reads while the consumer writes; busy_timeout: wait, do not fail,
    # when the other process holds the write lock for a moment.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_store(url: str, *, upgrade: bool = True) -> Engine:
    """An engine on ``url``, its schema brought to the newest migration when ``upgrade``."""
    url = engine_url(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # orjson writes NaN and infinity as null: PostgreSQL's JSON refuses them.
    engine = create_engine(url, pool_pre_ping=True,
                           json_serializer=lambda v: orjson.dumps(v).decode())
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if upgrade:
        migrate(engine)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine`` (idempotent)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
