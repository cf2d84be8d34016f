"""The Faust worker consumer is built with our fetch wait, not faust's hard-coded 1500 ms."""

from __future__ import annotations

import asyncio

from streams.app import build_app
from streams.config import Config
from streams.faust_transport import FETCH_MAX_WAIT_MS


def test_worker_consumer_fetch_wait_is_short() -> None:
    async def build() -> int:
        app = build_app(Config())
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)
        try:
            # What AIOKafkaConsumer.start() hands to its fetcher.
            return consumer._fetch_max_wait_ms
        finally:
            await consumer._client.close()

    assert FETCH_MAX_WAIT_MS < 1500
    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS
