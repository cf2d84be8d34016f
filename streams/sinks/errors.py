"""Exceptions of the sinks package: one root, one class per failure kind."""

from __future__ import annotations

from streams.errors import DistillwatchError

__all__ = ["DeliveryError", "PolicyError", "SinkError"]


class SinkError(DistillwatchError):
    """Root of every error raised by an alert sink."""


class DeliveryError(SinkError):
    """One delivery attempt failed.

    ``retriable`` says whether trying again can help (timeouts, connection errors, 5xx, 429);
    ``retry_after`` is the server's requested pause in seconds (HTTP ``Retry-After``), if any;
    ``status`` is the HTTP status, None when no response came back. The message never holds a
    URL or a credential: it is logged and copied into ``alerts-dlq``.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status
        self.retry_after = retry_after


class PolicyError(SinkError, ValueError):
    """The suspension policy file is missing or invalid; the message names the field."""
