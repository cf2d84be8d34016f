"""Slack sink: one Block Kit message per entity (a campaign's cluster, or a lone account).

Alerts are grouped by entity: every detector's alert on the same account or cluster shares
one message, and alerts of accounts that are members of an open cluster alert are folded
into the cluster's message (counted, not posted), so a campaign of 10,000 accounts is one
message, not 10,000. Two ways to reach Slack:

- **bot token** (``chat.postMessage`` + ``chat.update``): the message is posted once and
  then edited in place as the alert is updated and resolved;
- **incoming webhook**: a webhook cannot edit what it posted, so the sink posts when the
  group opens and again only when its severity rises; updates in between are folded in.

The runner spaces requests by ``slack_min_interval_s`` (Slack allows about one message per
second per webhook) and honours ``429`` + ``Retry-After``. A flood guard caps *new*
messages per minute; entities past it are counted in one digest message. The webhook URL
and the token are credentials: they are never logged (errors name the sink as ``slack``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from detectors.findings import severity_rank
from streams.sinks.base import Sink
from streams.sinks.envelope import Envelope
from streams.sinks.errors import DeliveryError
from streams.sinks.slack_blocks import code, fit, render
from streams.sinks.transport import HttpSession, post

__all__ = ["MessageLog", "SlackGroups", "SlackSink"]

log = logging.getLogger(__name__)

_RETRIABLE_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
_GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass(slots=True)
class Group:
    """Slack state of one entity's alerts."""

    key: tuple[str, str]
    alerts: dict[str, Envelope] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)
    folded: set[str] = field(default_factory=set)
    members: frozenset[str] = frozenset()
    channel: str | None = None
    ts: str | None = None
    posted: bool = False
    sent_digest: tuple[Any, ...] | None = None
    sent_severity: str | None = None
    restored: bool = False

    @property
    def resolved(self) -> bool:
        return not self.open

    @property
    def severity(self) -> str:
        live = [e for e in self.alerts.values() if e.detector in self.open] or list(
            self.alerts.values()
        )
        return max((e.severity for e in live), key=severity_rank)

    def digest(self) -> tuple[Any, ...]:
        """What a reader would notice changing (folded member counts are not worth an edit)."""
        return (
            self.severity,
            tuple(sorted(self.open)),
            tuple(
                (d, round(float(e.change.get("score") or 0.0), 1), e.change.get("member_count"))
                for d, e in sorted(self.alerts.items())
            ),
        )


class SlackGroups:
    """Alert changes to groups, in order; pure bookkeeping, no I/O.

    >>> from streams.sinks.envelope import Envelope
    >>> def env(etype, eid, state="opened", members=None):
    ...     c = {"alert_id": eid, "state": state, "entity_type": etype, "entity_id": eid,
    ...          "detector": "d", "members": members or []}
    ...     return Envelope.build(c, detectors=("d",), severity="warning")
    >>> groups = SlackGroups()
    >>> g, sync = groups.fold(env("cluster", "c1", members=["a1", "a2"]))
    >>> g.key, sync
    (('cluster', 'c1'), True)
    >>> g2, sync = groups.fold(env("account", "a1"))  # member of c1: folded, no own message
    >>> g2 is g, sync, len(g.folded)
    (True, False, 1)
    """

    def __init__(self, max_groups: int = 10_000) -> None:
        self.max_groups = max_groups
        self._groups: OrderedDict[tuple[str, str], Group] = OrderedDict()
        self._member_of: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def fold(self, env: Envelope, *, known: bool = False) -> tuple[Group | None, bool]:
        """Apply one change; return its group and whether the message needs syncing.

        ``known``: the entity has a message from before a restart, so even a resolution
        without a group in memory has a message to update."""
        resolved = env.state == "resolved"
        key = (env.entity_type, env.entity_id)
        if env.entity_type != "cluster" and key not in self._groups:
            ck = self._member_of.get(env.entity_id)
            cluster = self._groups.get(ck) if ck is not None else None
            if cluster is not None:
                if resolved:
                    cluster.folded.discard(env.entity_id)
                else:
                    cluster.folded.add(env.entity_id)
                return cluster, False
        g = self._groups.get(key)
        if g is None:
            if resolved and not known:
                return None, False
            g = self._groups[key] = Group(key)
            while len(self._groups) > self.max_groups:
                _, old = self._groups.popitem(last=False)
                self._unindex(old)
        self._groups.move_to_end(key)
        g.alerts[env.detector] = env
        if resolved:
            g.open.discard(env.detector)
        else:
            g.open.add(env.detector)
        if env.entity_type == "cluster":
            self._unindex(g)
            if g.open:
                members: set[str] = set()
                for e in g.alerts.values():
                    if e.detector in g.open:
                        members.update(str(m) for m in e.change.get("members") or ())
                g.members = frozenset(members)
                for m in g.members:
                    self._member_of.setdefault(m, key)
        return g, True

    def _unindex(self, g: Group) -> None:
        for m in g.members:
            if self._member_of.get(m) == g.key:
                del self._member_of[m]
        g.members = frozenset()

    def drop(self, g: Group) -> None:
        """Forget a resolved group once its final state was sent."""
        if self._groups.get(g.key) is g:
            del self._groups[g.key]
            self._unindex(g)


def _milestone(n: int) -> bool:
    """1, 2, 5, 10, 20, 50, 100, ...: when the digest is worth a request.

    >>> [n for n in range(1, 60) if _milestone(n)]
    [1, 2, 5, 10, 20, 50]
    """
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n in (1, 2, 5)


@dataclass(slots=True)
class _Digest:
    """Entities that got no message of their own during one burst."""

    count: int = 0
    sent_count: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    ts: str | None = None
    channel: str | None = None

    def add(self, g: Group) -> None:
        self.count += 1
        sev = g.severity
        self.by_severity[sev] = self.by_severity.get(sev, 0) + 1
        if len(self.sample) < 10:
            self.sample.append(f"{g.key[0]} {g.key[1]}")

    def render(self) -> dict[str, Any]:
        sevs = ", ".join(f"{n} {s}" for s, n in sorted(self.by_severity.items()))
        sample = fit((code(x) for x in self.sample), ", ", 2000)
        text = (
            f"*{self.count}+ more alerting entities* ({sevs}) got no message of their own: "
            "the Slack message budget for this minute was spent. They are on the `alerts` "
            f"topic, in the webhooks and in Grafana. First ones: {sample}"
        )
        header = f":warning: Alert flood: {self.count}+ more entities"
        return {
            "text": f"Alert flood: {self.count}+ more alerting entities not posted individually",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": header}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            ],
        }


class MessageLog:
    """Which entities have a Slack message (channel, ts, severity), kept in a small JSON file
    so that after a restart the worker edits a campaign's message instead of posting a
    second one. Written atomically after each post; capped at ``max_entries``."""

    def __init__(self, path: str | Path | None, max_entries: int = 10_000) -> None:
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @staticmethod
    def _key(key: tuple[str, str]) -> str:
        return f"{key[0]}|{key[1]}"

    def load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("slack message log unreadable (%s): starting empty", type(err).__name__)
            return
        self._entries = OrderedDict(data.get("messages", {}))

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self._entries.get(self._key(key))

    def put(self, g: Group) -> None:
        k = self._key(g.key)
        self._entries[k] = {"channel": g.channel, "ts": g.ts, "severity": g.sent_severity}
        self._entries.move_to_end(k)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        self._save()

    def pop(self, key: tuple[str, str]) -> None:
        if self._entries.pop(self._key(key), None) is not None:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"messages": self._entries}))
        os.replace(tmp, self.path)


class SlackSink(Sink):
    """Post alert groups to Slack (see the module docstring for the two modes).

    Parameters
    ----------
    webhook_url
        Incoming-webhook URL (webhook mode).
    bot_token, channel
        Bot token and channel id (edit-in-place mode); wins over ``webhook_url``.
    api_url
        Slack Web API base URL.
    timeout_s
        Timeout of one request.
    new_per_minute
        Flood guard: new messages allowed per minute. Entities past it get no message of
        their own; one digest message counts them (posted, then edited or re-posted when the
        count reaches 1, 2, 5, 10, 20, 50, ...), so a burst of unrelated alerts cannot bury
        the channel.
    clock
        Monotonic clock (injected in tests).
    state_path
        File of the :class:`MessageLog` (None: in memory only).
    console_url
        ``console.public_url``: messages link each alert's console page (None: no link).
    """

    name = "slack"

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        api_url: str = "https://slack.com/api",
        timeout_s: float = 10.0,
        new_per_minute: int = 10,
        clock: Callable[[], float] = time.monotonic,
        state_path: str | Path | None = None,
        console_url: str | None = None,
    ) -> None:
        if bot_token and not channel:
            raise ValueError("slack: a bot token needs sinks.slack_channel")
        if not bot_token and not webhook_url:
            raise ValueError("slack: set sinks.slack_webhook_url or sinks.slack_bot_token")
        self.mode: Literal["api", "webhook"] = "api" if bot_token else "webhook"
        self._webhook_url = webhook_url
        self._token = bot_token
        self.channel = channel
        self.api_url = api_url.rstrip("/")
        self.groups = SlackGroups()
        self._http = HttpSession(timeout_s)
        self._current: tuple[str, Group | None, bool] | None = None
        self.new_per_minute = new_per_minute
        self.clock = clock
        self._new_times: deque[float] = deque()
        self._suppressed: set[tuple[str, str]] = set()
        self._digest = _Digest()
        self.messages = MessageLog(state_path)
        self.console_url = console_url

    def __repr__(self) -> str:  # never show the URL or token
        return f"SlackSink(mode={self.mode})"

    async def setup(self) -> None:
        self.messages.load()
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def send(self, env: Envelope) -> int:
        # Fold once per envelope: the runner calls send again after a failed attempt.
        if self._current is None or self._current[0] != env.delivery_id:
            known = self.messages.get((env.entity_type, env.entity_id)) is not None
            g, sync = self.groups.fold(env, known=known)
            self._current = (env.delivery_id, g, sync)
        _, g, sync = self._current
        if g is None or not sync:
            return 0
        if not g.posted and not g.restored:
            g.restored = True
            known = self.messages.get(g.key)
            if known is not None:  # posted before a restart: keep editing that message
                g.posted, g.channel, g.ts = True, known["channel"], known["ts"]
                g.sent_severity = known["severity"]
        if g.key in self._suppressed or (not g.posted and self._over_budget(g)):
            return await self._suppress(g)
        sent = await self._sync(g)
        if g.resolved:
            self.groups.drop(g)
            self.messages.pop(g.key)
        return sent

    def _over_budget(self, g: Group) -> bool:
        """True when ``g`` would be one new message too many this minute."""
        if g.resolved:
            return False
        now = self.clock()
        while self._new_times and self._new_times[0] <= now - 60.0:
            self._new_times.popleft()
        if len(self._new_times) >= self.new_per_minute:
            return True
        if self._digest.count:
            self._digest = _Digest()  # the burst is over: the next one gets a new digest
        self._new_times.append(now)
        return False

    async def _suppress(self, g: Group) -> int:
        if g.key not in self._suppressed:
            self._suppressed.add(g.key)
            self._digest.add(g)
        if g.resolved:
            self._suppressed.discard(g.key)
            self.groups.drop(g)
        d = self._digest
        if d.count <= d.sent_count or not _milestone(d.count):
            return 0
        payload = d.render()
        if self.mode == "api":
            if d.ts is None:
                resp = await self._api("chat.postMessage", {"channel": self.channel, **payload})
                d.ts, d.channel = str(resp["ts"]), str(resp.get("channel") or self.channel)
            else:
                await self._api("chat.update", {"channel": d.channel, "ts": d.ts, **payload})
        else:
            await self._post_webhook(payload)
        d.sent_count = d.count
        return 1

    async def on_dead(self, env: Envelope, reason: str) -> None:
        self._current = None

    async def _sync(self, g: Group) -> int:
        payload = render(g.alerts, g.open, folded_accounts=len(g.folded),
                         console_url=self.console_url)
        digest = g.digest()
        severity = g.severity
        if self.mode == "api":
            if g.ts is None:
                if g.resolved:
                    return 0
                await self._post_api(g, payload)
            elif digest != g.sent_digest:
                try:
                    await self._api("chat.update", {"channel": g.channel, "ts": g.ts, **payload})
                except DeliveryError as err:
                    if str(err).split()[-1] not in _GONE_ERRORS:
                        raise
                    await self._post_api(g, payload)  # deleted by a human: post afresh
            else:
                return 0
        else:
            escalated = g.posted and severity_rank(severity) > severity_rank(
                g.sent_severity or "info"
            )
            if g.resolved or (g.posted and not escalated):
                g.sent_digest = digest
                return 0
            if escalated:
                payload["text"] = "Escalated: " + payload["text"]
            await self._post_webhook(payload)
        remember = not g.posted or g.sent_severity != severity
        g.posted = True
        g.sent_digest = digest
        g.sent_severity = severity
        if remember:
            self.messages.put(g)
        return 1

    async def _post_webhook(self, payload: dict[str, Any]) -> None:
        assert self._webhook_url is not None
        await post(
            self._http.session,
            self._webhook_url,
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json"},
            what="slack webhook",
        )

    async def _post_api(self, g: Group, payload: dict[str, Any]) -> None:
        resp = await self._api("chat.postMessage", {"channel": self.channel, **payload})
        g.ts = str(resp["ts"])
        g.channel = str(resp.get("channel") or self.channel)

    async def _api(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await post(
            self._http.session,
            f"{self.api_url}/{method}",
            data=orjson.dumps(body),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {self._token}",
            },
            what=f"slack {method}",
        )
        try:
            data = orjson.loads(resp.text)
        except orjson.JSONDecodeError:
            raise DeliveryError(f"slack {method}: answer is not JSON", retriable=True) from None
        if not data.get("ok"):
            error = str(data.get("error", "unknown_error"))
            raise DeliveryError(
                f"slack {method}: {error}", retriable=error in _RETRIABLE_API_ERRORS
            )
        return data  # type: ignore[no-any-return]
