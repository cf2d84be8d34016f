"""A failed write to requests-dlq is retried, never dropped: ``publish`` returns only once
every record is written, and raises (so the caller commits nothing) if told to stop first.
The send function stands in for the producer's; the broker path is in test_poison."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.dlq import publish


class FlakySend:
    """Fails the first ``fail`` attempts: half by raising, half by a failed delivery."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls = 0
        self.delivered: list[bytes] = []

    async def __call__(self, value: bytes) -> asyncio.Future[None]:
        self.calls += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.calls <= self.fail:
            if self.calls % 2:
                raise ConnectionError("broker gone")
            fut.set_exception(TimeoutError("delivery timed out"))
            return fut
        self.delivered.append(value)
        fut.set_result(None)
        return fut


def test_failed_dlq_writes_are_retried_until_written():
    send = FlakySend(fail=3)
    failures: list[int] = []
    recs = [{"reason": "not_json", "offset": 1}, {"reason": "too_deep", "offset": 2}]
    asyncio.run(publish(send, recs, on_failure=failures.append, first_delay_s=0.001))
    assert sorted(orjson.loads(v)["offset"] for v in send.delivered) == [1, 2]
    assert sum(failures) == 3 and len(failures) >= 2


def test_publish_raises_instead_of_returning_when_stopping_with_unwritten_records():
    send = FlakySend(fail=10**6)
    with pytest.raises(RuntimeError, match="unwritten"):
        asyncio.run(publish(send, [{"reason": "x"}], should_stop=lambda: True,
                            first_delay_s=0.001))
    assert send.delivered == []


def test_the_round_that_gives_up_is_still_counted_and_logged(caplog):
    # The metric must not miss the last failed round: it is the one an operator sees at
    # shutdown, and the error says which write failed.
    send = FlakySend(fail=10**6)
    failures: list[int] = []
    recs = [{"reason": "x", "offset": 1}, {"reason": "y", "offset": 2}]
    with caplog.at_level("ERROR"), pytest.raises(RuntimeError, match="2 dead-letter") as err:
        asyncio.run(publish(send, recs, should_stop=lambda: True, on_failure=failures.append,
                            first_delay_s=0.001))
    assert failures == [2] and send.calls == 2
    assert "not retrying" in caplog.text and "ConnectionError: broker gone" in caplog.text
    assert isinstance(err.value.__cause__, ConnectionError | TimeoutError)
