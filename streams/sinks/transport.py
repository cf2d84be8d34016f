"""One HTTP POST for the sinks, with errors classified for retry and scrubbed of URLs.

aiohttp's exceptions name the URL they failed on; the URL of a Slack webhook *is* the
credential, so nothing here lets an exception text or a URL reach a log line or the DLQ.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from streams.sinks.errors import DeliveryError

__all__ = ["HttpSession", "Response", "parse_retry_after", "post"]

# A server asking for longer than this is treated as this; the runner retries anyway.
_MAX_RETRY_AFTER_S = 300.0
_BODY_SNIPPET = 120


class HttpSession:
    """One aiohttp session per destination, opened inside the running loop."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpSession.open() first")
        return self._session


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    text: str


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("3"), parse_retry_after("0.5"), parse_retry_after(None)
    (3.0, 0.5, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _snippet(text: str) -> str:
    return " ".join(text.split())[:_BODY_SNIPPET]


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    what: str,
) -> Response:
    """POST ``data`` to ``url``; return the response for 2xx, raise
    :class:`~streams.sinks.errors.DeliveryError` otherwise. ``what`` names the target in
    error texts (e.g. ``"webhook #1"``) instead of the URL."""
    try:
        async with session.post(
            url, data=data, headers=dict(headers), allow_redirects=False
        ) as resp:
            text = await resp.text(errors="replace")
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except TimeoutError:
        raise DeliveryError(f"{what}: timed out", retriable=True) from None
    except aiohttp.ClientConnectorError:
        raise DeliveryError(f"{what}: cannot connect", retriable=True) from None
    except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as err:
        # The exception text may hold the URL: keep only its type.
        raise DeliveryError(f"{what}: {type(err).__name__}", retriable=True) from None
    if 200 <= status < 300:
        return Response(status, text)
    retriable = status in (408, 425, 429) or status >= 500
    raise DeliveryError(
        f"{what}: HTTP {status} {_snippet(text)}".rstrip(),
        retriable=retriable,
        status=status,
        retry_after=retry_after if status in (429, 503) else None,
    )
