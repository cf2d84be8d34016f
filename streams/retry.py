"""Retry a write until it lands or the worker stops: the one backoff loop the dead-letter
writers share (``requests-dlq`` in :mod:`streams.dlq`, ``alerts-dlq`` in
:mod:`streams.sinks.dead_letter`).

Built on tenacity rather than a hand-written loop. Both callers want the same thing: capped
exponential backoff with no attempt limit (a DLQ record must not be dropped while the worker
runs), a hook after every failed attempt for their log line and metric, and a way out only
once the worker is stopping, so shutdown cannot hang on a dead broker. What each does on the
way out (raise so no offset is committed, or log the record as lost) stays with the caller:
here giving up is a :class:`tenacity.RetryError`.

>>> import asyncio
>>> calls = []
>>> async def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("broker gone")
...     return "written"
>>> asyncio.run(retry_until_stopped(flaky, initial_s=0.001, max_s=0.001))
'written'
>>> len(calls)
3
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    wait_exponential,
)

__all__ = ["Failure", "RetryError", "retry_until_stopped"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, as the ``on_failure`` hook sees it.

    ``retry_in_s`` is the wait before the next attempt, or None when this was the last one
    (the worker is stopping and :func:`retry_until_stopped` is about to raise
    :class:`~tenacity.RetryError`): the hook logs and counts it like any other failure, and
    can say the record was given up.
    """

    attempt: int
    error: BaseException
    retry_in_s: float | None

    @property
    def giving_up(self) -> bool:
        return self.retry_in_s is None


def _stop_when(should_stop: Callable[[], bool], every: int) -> Callable[[RetryCallState], bool]:
    """A tenacity stop condition: ``should_stop()``, asked only every ``every``-th failed
    attempt.

    ``every`` > 1 lets a caller finish a round of attempts before giving up (the alerts-dlq
    writer gives a record, at shutdown, the ``alarm_every`` attempts one alarm stands for)."""
    every = max(1, every)

    def stop(state: RetryCallState) -> bool:
        return state.attempt_number % every == 0 and should_stop()

    return stop


def _never() -> bool:
    return False


async def retry_until_stopped(
    attempt: Callable[[], Awaitable[T]],
    *,
    initial_s: float,
    max_s: float,
    should_stop: Callable[[], bool] = _never,
    check_stop_every: int = 1,
    on_failure: Callable[[Failure], None] | None = None,
) -> T:
    """Await ``attempt()`` until it returns, and return its result.

    Any :class:`Exception` it raises is a failed attempt: ``on_failure`` is called with it,
    then the next attempt follows after ``initial_s * 2**(n-1)`` seconds, capped at
    ``max_s``. There is no attempt limit. ``should_stop()`` is asked after a failed attempt
    (every ``check_stop_every``-th one); once it answers True no more attempts are made and
    :class:`tenacity.RetryError` is raised, its ``last_attempt`` holding the last error.

    :class:`asyncio.CancelledError` (and any other :class:`BaseException`) is not an
    :class:`Exception`: it is never retried nor passed to ``on_failure``, it propagates at
    once, so cancelling the caller's task cancels the writes too.
    """

    def report(state: RetryCallState, retry_in_s: float | None) -> None:
        if on_failure is None:
            return
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        assert error is not None  # tenacity only calls these hooks after a failed attempt
        on_failure(Failure(state.attempt_number, error, retry_in_s))

    def before_sleep(state: RetryCallState) -> None:
        report(state, state.upcoming_sleep)

    def gave_up(state: RetryCallState) -> T:
        report(state, None)
        assert state.outcome is not None
        raise RetryError(state.outcome) from state.outcome.exception()

    async def call() -> T:
        # tenacity awaits only what it sees as a coroutine function: a lambda or a partial
        # returning a coroutine would be taken as a successful result and never awaited.
        return await attempt()

    retrying = AsyncRetrying(
        sleep=asyncio.sleep,
        wait=wait_exponential(multiplier=initial_s, max=max_s),
        retry=retry_if_exception_type(Exception),
        stop=_stop_when(should_stop, check_stop_every),
        before_sleep=before_sleep,
        retry_error_callback=gave_up,
    )
    return await retrying(call)
