"""``distillwatch store``: consume ``alerts`` and ``actions`` into the alert store.

Runs until Ctrl-C / SIGTERM (``--catch-up`` exits once the topics are read to the end).
The database is ``store.url`` (default SQLite under ``worker.data_dir``); the schema is
migrated at start (Alembic), so upgrading distillwatch upgrades the store.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading

from streams.config import Config
from streams.config_cmd import config_from_args

__all__ = ["add_arguments", "run", "store_url"]

log = logging.getLogger(__name__)


def store_url(cfg: Config) -> str:
    """``store.url`` or the default SQLite file under ``worker.data_dir``."""
    from streams.store.db import default_url

    return cfg.store.url or default_url(cfg.worker.data_dir)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=None, help="kafka://HOST:PORT (default: broker.url)")
    p.add_argument("--catch-up", action="store_true",
                   help="exit after 2 s without new records instead of running forever")


def start_ingest(cfg: Config) -> tuple[object, threading.Thread]:
    """The store's consumer on a daemon thread (used by ``store`` and ``console``)."""
    from streams.integrity import signer_for
    from streams.store.db import open_store
    from streams.store.ingest import StoreIngest
    from streams.store.writer import StoreWriter

    ingest = StoreIngest(cfg, StoreWriter(open_store(store_url(cfg))), signer_for(cfg))
    def consume() -> None:
        try:
            ingest.run()
        except Exception:
            # The console goes on serving what is stored; say loudly that it is going stale.
            log.exception("store: the consumer stopped; the console shows no new alerts")

    thread = threading.Thread(target=consume, name="store-ingest", daemon=True)
    thread.start()
    return ingest, thread


def run(args: argparse.Namespace) -> int:
    from streams.integrity import signer_for
    from streams.store.db import open_store
    from streams.store.ingest import StoreIngest
    from streams.store.writer import StoreWriter

    cfg = config_from_args(args)
    if args.broker:
        cfg = cfg.model_copy(update={"broker": cfg.broker.model_copy(update={"url": args.broker})})
    engine = open_store(store_url(cfg))
    ingest = StoreIngest(cfg, StoreWriter(engine), signer_for(cfg))
    previous = signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    log.info("store: database %s", engine.url.render_as_string(hide_password=True))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            ingest.run(idle_exit_s=2.0 if args.catch_up else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"stored {dict(ingest.stored)}, duplicates {dict(ingest.duplicates)}, "
          f"rejected {dict(ingest.rejected)}, refused by the database "
          f"{ingest.writer.unstorable}")
    return 0
