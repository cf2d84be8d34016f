"""Faust's aiokafka transport with a short fetch wait.

faust-streaming 0.15 builds its worker consumer with ``fetch_max_wait_ms=1500`` and no
setting to change it. Tansu (and Kafka under ``fetch.min.bytes`` > 1) holds a fetch for up to
that long before answering, so a finding that arrives while the alert agent's fetch is
parked waits for it: ~0.5 s per hop measured on Tansu, against ~15 ms at 100 ms. The alert
agent is the last hop before an alert, so its wait is alert latency.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

__all__ = ["FETCH_MAX_WAIT_MS", "App"]

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds the fetcher (aiokafka 0.14, pinned;
        # tests/unit/test_faust_transport.py fails if that changes).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A :class:`faust.App` whose Kafka consumer waits at most ``FETCH_MAX_WAIT_MS``."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
