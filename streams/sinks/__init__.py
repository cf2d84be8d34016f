"""Alert sinks: Slack, signed webhooks and the policy-gated suspension hook.

:class:`~streams.sinks.base.Sink` is the contract (``setup`` / ``send`` / ``on_dead`` /
``close``), :class:`~streams.sinks.base.SinkRunner` feeds one sink from a bounded queue with
retries, and :class:`~streams.sinks.dispatch.Dispatcher` fans alert changes out to the
runners. :mod:`streams.sinks.policy` is the pure policy logic. Nothing here imports Faust or
Kafka: :mod:`streams.delivery` wires it into the worker. docs/delivery.md is the guide.
"""

from __future__ import annotations

from streams.sinks.base import ListSink, RetryPolicy, Sink, SinkRunner
from streams.sinks.dispatch import Dispatcher
from streams.sinks.envelope import Envelope
from streams.sinks.errors import DeliveryError, PolicyError, SinkError
from streams.sinks.policy import Policy, PolicyEngine, load_policy

__all__ = [
    "DeliveryError",
    "Dispatcher",
    "Envelope",
    "ListSink",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "RetryPolicy",
    "Sink",
    "SinkError",
    "SinkRunner",
    "load_policy",
]
