"""The sink contract, retry with backoff, and the runner that feeds a sink from a bounded queue.

A :class:`Sink` delivers one :class:`~streams.sinks.envelope.Envelope` per :meth:`Sink.send`
call and raises :class:`~streams.sinks.errors.DeliveryError` when it could not. A
:class:`SinkRunner` owns the sink's bounded queue and its one consumer task: deliveries happen
in order (a Slack update never overtakes its post), failures are retried with exponential
backoff and jitter, a ``Retry-After`` pauses the whole sink, and after ``max_attempts`` the
envelope goes to the dead-letter callback (``alerts-dlq``). :meth:`SinkRunner.offer` never
waits, so whoever feeds the runner is never slowed down by a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from streams.logsafe import safe
from streams.sinks.envelope import Envelope
from streams.sinks.errors import DeliveryError
from streams.sinks.metrics import SinkMetrics

__all__ = ["DeadLetter", "ListSink", "RetryPolicy", "Sink", "SinkRunner"]

log = logging.getLogger(__name__)

#: Called with (sink name, envelope, reason, error text, attempts) when a delivery is given up.
DeadLetter = Callable[[str, Envelope, str, str, int], Awaitable[None]]


class Sink(ABC):
    """A destination for alert envelopes.

    ``name`` is the metrics label and must be one of :data:`streams.sinks.metrics.SINKS`.
    Lifecycle: :meth:`setup` once inside the running loop, :meth:`send` per envelope (retried
    by the runner, so it must be safe to call again after it raised), :meth:`close` at the end.
    """

    name: str = "sink"

    async def setup(self) -> None:  # noqa: B027 - optional hook
        """Open clients (an HTTP session) inside the running event loop."""

    @abstractmethod
    async def send(self, env: Envelope) -> int:
        """Deliver ``env``; return the number of requests made (0 when there was nothing to
        send, e.g. an update folded into an existing message)."""

    async def on_dead(self, env: Envelope, reason: str) -> None:  # noqa: B027 - optional hook
        """Called once when the runner gives ``env`` up, before it goes to the DLQ."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


class ListSink(Sink):
    """Keeps every envelope in :attr:`items`: for debugging and tests.

    >>> import asyncio
    >>> from streams.sinks.envelope import Envelope
    >>> sink = ListSink()
    >>> env = Envelope.build({"alert_id": "a", "detector": "d"}, detectors=(), severity="info")
    >>> asyncio.run(sink.send(env)), len(sink.items)
    (1, 1)
    """

    def __init__(self, name: str = "webhook") -> None:
        self.name = name
        self.items: list[Envelope] = []

    async def send(self, env: Envelope) -> int:
        self.items.append(env)
        return 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one delivery.

    The n-th retry waits a random time in ``[d/2, d]`` with ``d = min(max_s, initial_s * 2**n)``
    ("equal jitter"): retries of many workers spread out instead of hitting a recovering
    receiver together, and the wait still grows.

    >>> p = RetryPolicy(max_attempts=4, initial_s=1.0, max_s=5.0)
    >>> rng = random.Random(1)
    >>> [0.5 <= p.delay(0, rng) <= 1.0, 2.0 <= p.delay(2, rng) <= 4.0, p.delay(9, rng) <= 5.0]
    [True, True, True]
    """

    max_attempts: int = 6
    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, retry: int, rng: random.Random) -> float:
        d = min(self.max_s, self.initial_s * (2**retry))
        return d / 2 + rng.random() * d / 2


class SinkRunner:
    """Feed one sink from a bounded queue, in order, with retries.

    Parameters
    ----------
    sink
        The destination.
    metrics
        Sink metrics; the runner keeps queued / sent / retried / failed up to date.
    dead_letter
        Receives every envelope given up on (retries exhausted, permanent error, full queue);
        a :class:`~streams.sinks.dispatch.Dispatcher` sets it to its alerts-dlq writer.
    queue_size
        Bound of the queue. :meth:`offer` returns False instead of waiting when it is full.
    retry
        Attempts and backoff.
    min_interval_s
        Minimum gap between two requests of this sink (Slack: about one per second).
    seed
        Seed of the backoff jitter.
    """

    def __init__(
        self,
        sink: Sink,
        metrics: SinkMetrics,
        dead_letter: DeadLetter | None = None,
        *,
        queue_size: int = 1000,
        retry: RetryPolicy | None = None,
        min_interval_s: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.retry = retry or RetryPolicy()
        self.min_interval_s = min_interval_s
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=queue_size)
        self._rng = random.Random(seed)
        self._not_before = 0.0  # monotonic time before which no request may start
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def pending(self) -> int:
        """Envelopes queued or in flight."""
        return self._queue.qsize() + (1 if self._busy else 0)

    def offer(self, env: Envelope) -> bool:
        """Queue ``env`` without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(env)
        except asyncio.QueueFull:
            return False
        self.metrics.queued.labels(self.name).inc()
        return True

    def reject(self, env: Envelope, reason: str) -> None:
        """Give ``env`` up without queueing it (the queue is full): DLQ in the background,
        so the caller still does not wait."""
        task = asyncio.ensure_future(self._give_up(env, reason, "queue full", 0, entered=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        await self.sink.setup()
        self._task = asyncio.ensure_future(self._run())

    async def join(self) -> None:
        """Wait until everything queued so far was delivered or given up."""
        await self._queue.join()

    async def stop(self, timeout: float = 5.0) -> int:
        """Let queued deliveries finish for up to ``timeout`` seconds, then stop; return the
        number of envelopes still queued (they are sent to the dead-letter callback)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = 0
        while not self._queue.empty():
            env = self._queue.get_nowait()
            self.metrics.queued.labels(self.name).dec()
            left += 1
            await self._give_up(
                env, "shutdown", "worker stopped before delivery", 0, entered=False
            )
        await self.sink.close()
        return left

    async def _run(self) -> None:
        while True:
            env = await self._queue.get()
            self._busy = True
            try:
                await self._deliver(env)
            except asyncio.CancelledError:
                # Stopping mid-delivery: the envelope is not lost, it goes to the DLQ.
                await self._give_up(env, "shutdown", "worker stopped during delivery", 0)
                raise
            finally:
                self._busy = False
                self.metrics.queued.labels(self.name).dec()
                self._queue.task_done()

    async def _wait_turn(self) -> None:
        wait = self._not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _deliver(self, env: Envelope) -> None:
        attempt = 0
        while True:
            attempt += 1
            await self._wait_turn()
            try:
                requests = await self.sink.send(env)
            except DeliveryError as err:
                self._not_before = time.monotonic() + self.min_interval_s
                if not err.retriable or attempt >= self.retry.max_attempts:
                    reason = "retries_exhausted" if err.retriable else "permanent_error"
                    log.warning(
                        "sink %s gave up on alert %s after %s attempt(s): %s",
                        self.name,
                        safe(env.alert_id),
                        attempt,
                        safe(str(err)),
                    )
                    await self._give_up(env, reason, str(err), attempt)
                    return
                delay = self.retry.delay(attempt - 1, self._rng)
                if err.retry_after is not None:
                    # The server named its price: pause the whole sink, not just this item.
                    delay = max(delay, err.retry_after)
                    self._not_before = time.monotonic() + err.retry_after
                self.metrics.retried.labels(self.name).inc()
                log.info(
                    "sink %s attempt %s for alert %s failed (%s); retrying in %.2fs",
                    self.name,
                    attempt,
                    safe(env.alert_id),
                    safe(str(err)),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except Exception as err:  # a bug in a sink must not stop delivery of the rest
                log.exception("sink %s crashed on alert %s", self.name, safe(env.alert_id))
                await self._give_up(env, "sink_error", type(err).__name__, attempt)
                return
            if requests:
                self.metrics.sent.labels(self.name).inc(requests)
                self._not_before = time.monotonic() + self.min_interval_s
            return

    async def _give_up(
        self, env: Envelope, reason: str, error: str, attempts: int, *, entered: bool = True
    ) -> None:
        """Count, tell the sink (if it ever saw ``env``) and dead-letter ``env``."""
        self.metrics.failed.labels(self.name).inc()
        if entered:
            try:
                await self.sink.on_dead(env, reason)
            except Exception:
                log.exception("sink %s on_dead hook failed", self.name)
        if self.dead_letter is None:
            log.error("sink %s dropped alert %s (%s): no dead-letter writer", self.name,
                      safe(env.alert_id), reason)
            return
        await self.dead_letter(self.name, env, reason, error, attempts)


def dlq_record(
    sink: str, env: Envelope, reason: str, error: str, attempts: int
) -> dict[str, Any]:
    """The ``alerts-dlq`` record of an envelope a sink gave up on: enough to replay it."""
    return {
        "sink": sink,
        "reason": reason,
        "error": error,
        "attempts": attempts,
        "delivery_id": env.delivery_id,
        "alert_id": env.alert_id,
        "failed_at": time.time(),
        "envelope": env.body(),
    }
