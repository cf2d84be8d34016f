"""The shared retry loop of the dead-letter writers (streams.retry): what it waits, when it
gives up, that the failure hook sees every failed attempt, and that cancellation is never
taken for a failed write."""

from __future__ import annotations

import asyncio

import pytest

from streams.retry import Failure, RetryError, retry_until_stopped


class Flaky:
    """An attempt that raises ``error`` on its first ``fail`` calls, then returns "ok"."""

    def __init__(self, fail: int, error: BaseException | None = None) -> None:
        self.fail = fail
        self.error = error or ConnectionError("broker gone")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        return "ok"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Every delay the loop sleeps, without waiting it (the loop yields all the same)."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args, **kwargs):
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return slept


def test_backoff_doubles_and_is_capped_even_after_many_attempts(sleeps):
    attempt = Flaky(fail=300)
    got = asyncio.run(retry_until_stopped(attempt, initial_s=1.0, max_s=5.0))
    assert got == "ok" and attempt.calls == 301
    assert sleeps[:5] == [1.0, 2.0, 4.0, 5.0, 5.0]
    # 2**299 seconds would overflow a float: the cap must hold all the way, not just early.
    assert len(sleeps) == 300 and max(sleeps) == 5.0 and sleeps[-1] == 5.0


def test_failure_hook_sees_every_failed_attempt_with_its_error_and_wait(sleeps):
    seen: list[Failure] = []
    attempt = Flaky(fail=3)
    asyncio.run(retry_until_stopped(attempt, initial_s=0.5, max_s=10.0,
                                    on_failure=seen.append))
    assert [(f.attempt, f.retry_in_s, f.giving_up) for f in seen] == [
        (1, 0.5, False), (2, 1.0, False), (3, 2.0, False)]
    assert all(f.error is attempt.error for f in seen)
    assert sleeps == [0.5, 1.0, 2.0]  # what the hook is told is what is waited


def test_never_gives_up_on_its_own_without_a_stop(sleeps):
    # No attempt limit: a DLQ write that keeps failing while the worker runs is retried.
    attempt = Flaky(fail=1000)
    assert asyncio.run(retry_until_stopped(attempt, initial_s=0.001, max_s=0.001)) == "ok"


def test_stops_only_when_asked_and_reports_the_last_attempt_as_given_up(sleeps):
    seen: list[Failure] = []
    attempt = Flaky(fail=10**6)
    stop = {"now": False}

    def on_failure(f: Failure) -> None:
        seen.append(f)
        if f.attempt == 4:
            stop["now"] = True

    with pytest.raises(RetryError) as gave_up:
        asyncio.run(retry_until_stopped(attempt, initial_s=0.01, max_s=0.01,
                                        should_stop=lambda: stop["now"],
                                        on_failure=on_failure))
    # Asked after attempt 5 (the first failure once the flag is up): no 6th attempt.
    assert attempt.calls == 5
    assert [f.giving_up for f in seen] == [False, False, False, False, True]
    assert gave_up.value.last_attempt.exception() is attempt.error
    assert len(sleeps) == 4  # no sleep after giving up


def test_stop_is_asked_only_at_the_end_of_a_round(sleeps):
    # check_stop_every=3 with the stop already asked for: the round of 3 attempts finishes.
    attempt = Flaky(fail=10**6)
    with pytest.raises(RetryError):
        asyncio.run(retry_until_stopped(attempt, initial_s=0.01, max_s=0.01,
                                        should_stop=lambda: True, check_stop_every=3))
    assert attempt.calls == 3


def test_a_success_before_the_stop_is_returned_not_given_up(sleeps):
    attempt = Flaky(fail=2)
    got = asyncio.run(retry_until_stopped(attempt, initial_s=0.01, max_s=0.01,
                                          should_stop=lambda: True, check_stop_every=3))
    assert got == "ok" and attempt.calls == 3


def test_cancelled_error_from_an_attempt_propagates_at_once(sleeps):
    seen: list[Failure] = []
    attempt = Flaky(fail=5, error=asyncio.CancelledError())

    async def main() -> None:
        await retry_until_stopped(attempt, initial_s=0.01, max_s=0.01, on_failure=seen.append)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert attempt.calls == 1 and seen == [] and sleeps == []


def test_cancelling_the_caller_while_it_backs_off_cancels_the_retries():
    attempt = Flaky(fail=10**6)

    async def main() -> None:
        task = asyncio.ensure_future(retry_until_stopped(attempt, initial_s=0.05, max_s=0.05))
        await asyncio.sleep(0.12)
        calls = attempt.calls
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.12)
        assert attempt.calls == calls  # nothing retried after the cancel

    asyncio.run(main())
    assert attempt.calls >= 2


def test_other_base_exceptions_are_not_retried_either(sleeps):
    attempt = Flaky(fail=5, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(retry_until_stopped(attempt, initial_s=0.01, max_s=0.01))
    assert attempt.calls == 1


def test_a_lambda_returning_a_coroutine_is_awaited_and_retried(sleeps):
    # tenacity alone would take the coroutine object for a successful result.
    attempt = Flaky(fail=2)
    got = asyncio.run(retry_until_stopped(lambda: attempt(), initial_s=0.01, max_s=0.01))
    assert got == "ok" and attempt.calls == 3
