"""Exceptions of the streams package: one root, one class per failure kind."""

from __future__ import annotations

__all__ = ["BrokerError", "DistillwatchError"]


class DistillwatchError(Exception):
    """Root of every error distillwatch raises on purpose."""


class BrokerError(DistillwatchError, RuntimeError):
    """The embedded broker could not start, or died."""
