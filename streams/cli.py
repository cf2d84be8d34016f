"""The ``distillwatch`` command line.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only maps names to modules and imports the chosen one, so
``distillwatch --help`` stays fast and a broken optional command never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("streams.demo", "start broker, worker and traffic; print alerts as they fire"),
    "broker": ("streams.broker", "run the embedded Tansu broker on 127.0.0.1"),
    "worker": ("streams.worker", "run the Faust worker against a Kafka broker"),
    "config": ("streams.config_cmd", "show the effective configuration (secrets masked)"),
    "simulate": ("simulator.cli", "generate labelled traffic from a scenario file"),
    "replay": ("streams.replay", "run the detectors over an event file, offline"),
    "evaluate": ("evaluation.cli", "score alerts against labels: precision, recall, delay"),
    "actions": ("streams.actions_cmd", "list and approve pending suspension actions"),
    "store": ("streams.store.cli", "consume alerts and the audit trail into the alert store"),
    "alerts": ("streams.alerts_cmd", "list alerts and show one (timeline, evidence, members)"),
    "console": ("streams.console.cli", "the web console: alert queue, alert pages, approvals"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("distillwatch")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillwatch",
        description=(
            "Streaming monitor for extraction / distillation abuse of an LLM API. "
            "Run `distillwatch demo` to see it work end to end on an embedded broker."
        ),
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="TOML configuration file (env DISTILLWATCH_CONFIG); DISTILLWATCH_SECTION__FIELD "
        "variables override it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"distillwatch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as err:
            # Only the command's own module may be missing; a missing dependency is a bug.
            if err.name is None or not (module + ".").startswith(err.name + "."):
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # kafka-python (admin, demo and simulator clients) logs every connect and metadata
        # refresh at INFO: noise that buried the demo's alerts. Its warnings still show.
        logging.getLogger("kafka").setLevel(logging.WARNING)
    if getattr(args, "_missing", False):
        print(f"distillwatch: command {args.command!r} is not available yet", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
