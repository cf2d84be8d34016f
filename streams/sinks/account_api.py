"""Client of the platform's account API: one POST per action on one account.

Request: ``POST <account_api_url>`` with JSON ``{"action": "flag"|"throttle"|"suspend",
"account_id", "alert_id", "reason", "detector", "severity"}`` and headers
``Idempotency-Key: <alert_id>:<account_id>:<action>`` and ``Authorization: <account_api_auth>``.
Any 2xx is success; ``409 Conflict`` means the API already did it (also success). 5xx, 408,
429 and network errors are retried by the runner; other 4xx fail at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from streams.sinks.errors import DeliveryError
from streams.sinks.policy import Decision
from streams.sinks.transport import HttpSession, post

__all__ = ["AccountApi"]


class AccountApi:
    """POST actions to ``url``; ``auth`` is the Authorization header value (never logged)."""

    def __init__(self, url: str, auth: str | None = None, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._auth = auth
        self._http = HttpSession(timeout_s)

    def __repr__(self) -> str:
        return "AccountApi()"

    async def setup(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def act(self, d: Decision, change: Mapping[str, Any], severity: str) -> None:
        assert d.idempotency_key is not None
        body = {
            "action": d.action,
            "account_id": d.account_id,
            "alert_id": change.get("alert_id"),
            "reason": d.reason,
            "detector": change.get("detector"),
            "severity": severity,
        }
        headers = {"Content-Type": "application/json", "Idempotency-Key": d.idempotency_key}
        if self._auth:
            headers["Authorization"] = self._auth
        try:
            await post(
                self._http.session, self._url, data=orjson.dumps(body), headers=headers,
                what="account api",
            )
        except DeliveryError as err:
            if err.status != 409:
                raise
