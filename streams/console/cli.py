"""``distillwatch console``: serve the web console (and, unless ``--no-store``, run the
alert store's consumer in the same process).

``--hash-password`` reads a password (prompted, or one line on stdin) and prints the
``password_hash`` for a ``[[console.users]]`` entry. The console reads and decides
approvals where ``sinks.approvals_store`` says: by default the approvals topic in Kafka, so
it runs on any host that reaches the broker (with the workers' ``worker.record_secret``);
``--approvals FILE`` uses an approvals file instead, like ``distillwatch actions --file``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys

from streams.config_cmd import config_from_args

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hash-password", action="store_true",
                   help="print a password_hash for console.users and exit")
    p.add_argument("--broker", default=None, help="kafka://HOST:PORT (default: broker.url)")
    p.add_argument("--host", default=None, help="address (default: console.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: console.port)")
    p.add_argument("--no-store", action="store_true",
                   help="do not consume into the store here (a `distillwatch store` does)")
    p.add_argument("--approvals", default=None,
                   help="approvals file instead of the approvals topic")


def _hash_password() -> int:
    from streams.console.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("again: "):
            print("distillwatch console: the passwords differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        print("distillwatch console: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0


async def _serve(app, host: str, port: int, public_url: str | None) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    url = public_url or f"http://{host if ':' not in host else f'[{host}]'}:{bound}/"
    print(f"console at {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        return _hash_password()
    from streams.console.app import build_app
    from streams.console.audit import AuditPublisher
    from streams.integrity import signer_for
    from streams.sinks.approvals import open_approvals
    from streams.store.cli import start_ingest, store_url
    from streams.store.db import open_store
    from streams.store.writer import StoreWriter

    cfg = config_from_args(args)
    if args.broker:
        cfg = cfg.model_copy(update={"broker": cfg.broker.model_copy(update={"url": args.broker})})
    c = cfg.console
    if c.auth == "password" and not c.users:
        print("distillwatch console: no console.users configured: add [[console.users]] with "
              "a password_hash from `distillwatch console --hash-password`, or set "
              "console.auth = \"header\" behind an OIDC proxy", file=sys.stderr)
        return 2
    host = args.host or c.host
    if c.auth == "header" and host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("console: header auth on %s: anyone who reaches this port can claim any "
                    "user; bind 127.0.0.1 and let only the proxy reach it", host)
    if not c.session_secret and c.auth == "password":
        log.warning("console.session_secret is not set: a random key, so a restart logs "
                    "everyone out")
    engine = open_store(store_url(cfg))
    if not args.no_store:
        start_ingest(cfg)
    signer = signer_for(cfg)
    approvals = open_approvals(cfg, file=args.approvals, signer=signer)
    app = build_app(cfg, engine, approvals, AuditPublisher(cfg, signer, StoreWriter(engine)))
    asyncio.run(_serve(app, host, c.port if args.port is None else args.port, c.public_url))
    return 0
