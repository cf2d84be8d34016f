"""``distillwatch config --show``: print the effective configuration."""

from __future__ import annotations

import argparse
import json
import os
import sys

from streams.config import Config, ConfigError, load_config

__all__ = ["add_arguments", "config_from_args", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", action="store_true", help="print the effective config as JSON")


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config named by ``--config`` or ``DISTILLWATCH_CONFIG``; exit 2 on errors."""
    path = getattr(args, "config", None) or os.environ.get("DISTILLWATCH_CONFIG")
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"distillwatch: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    print(json.dumps(cfg.masked(), indent=2))
    return 0
