"""The suspension policy: which alerts lead to which actions, and every safety gate around it.

Pure logic, no I/O: :class:`PolicyEngine` turns one alert change into :class:`Decision`
records; :class:`~streams.sinks.suspension.SuspensionSink` executes them and writes each one
to the ``actions`` audit topic. Gates, in order, for every target account:

1. a rule must match (first match wins; no match = no action);
2. allowlisted accounts, orgs and clusters are never actioned;
3. a cluster suspension above ``approval_above_members`` members waits for a human
   (``distillwatch actions approve``);
4. automatic suspension needs the detector's own severity at ``auto_suspend_min_severity``
   *and* ``min_agreeing_detectors`` independent detectors; otherwise the action falls back
   to ``fallback_action``;
5. one decision per idempotency key ``<alert_id>:<account_id>:<action>`` (a redelivered or
   updated alert does not act twice), and none that an earlier, stronger action on the same
   account makes redundant (flag < throttle < suspend, whatever alert took it);
6. throttles and suspensions spend an action budget (the circuit breaker): past
   ``breaker.max_actions`` per ``breaker.interval_s`` the hook stops acting for an interval
   and raises one critical "action budget exceeded" alert;
7. ``dry_run`` (the default) records what would have been done and does nothing.

Examples
--------
>>> pol = Policy(rules=(Rule(action="suspend_account"),), dry_run=False)
>>> eng = PolicyEngine(pol, clock=lambda: 0.0)
>>> change = {"alert_id": "a1", "state": "opened", "entity_type": "account",
...           "entity_id": "acct-1", "detector": "account_baseline", "severity": "critical"}
>>> [(d.action, d.decision) for d in eng.decide(change, agreeing=lambda a: 2).decisions]
[('suspend', 'execute')]
>>> [(d.action, d.decision) for d in eng.decide(change, agreeing=lambda a: 2).decisions]
[('suspend', 'skipped')]
>>> change2 = {**change, "alert_id": "a2", "entity_id": "acct-2"}
>>> [(d.action, d.decision) for d in eng.decide(change2, agreeing=lambda a: 1).decisions]
[('flag', 'execute')]
"""

from __future__ import annotations

import time
import tomllib
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.findings import SEVERITIES, severity_rank
from streams.sinks.errors import PolicyError

__all__ = [
    "Breaker",
    "Decision",
    "Policy",
    "PolicyEngine",
    "Rule",
    "Verdict",
    "effective_severity",
    "load_policy",
]

RuleAction = Literal["none", "flag", "throttle", "suspend_account", "suspend_cluster"]
ApiAction = Literal["none", "flag", "throttle", "suspend"]
Severity = Literal["info", "warning", "critical"]
Outcome = Literal["execute", "dry_run", "skipped", "pending_approval"]

_API_ACTION: dict[str, ApiAction] = {
    "none": "none",
    "flag": "flag",
    "throttle": "throttle",
    "suspend_account": "suspend",
    "suspend_cluster": "suspend",
}
# Flags only mark an account for review; throttles and suspensions hurt a customer if wrong.
_BUDGETED: frozenset[str] = frozenset({"throttle", "suspend"})
_DONE_KEYS = 200_000
_STRENGTH = {"flag": 1, "throttle": 2, "suspend": 3}


def effective_severity(severity: str, independent: int, min_agreeing: int = 2) -> str:
    """The detector's severity, one level higher when ``min_agreeing`` or more independent
    detectors flag the entity.

    >>> effective_severity("warning", 1), effective_severity("warning", 2)
    ('warning', 'critical')
    >>> effective_severity("critical", 3)
    'critical'
    """
    rank = severity_rank(severity)
    if independent >= min_agreeing:
        rank = min(rank + 1, len(SEVERITIES) - 1)
    return SEVERITIES[rank]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """Alerts matching every given condition get ``action``; rules are tried in order."""

    action: RuleAction = Field(description="What to do with a matching alert's accounts")
    entity_type: Literal["account", "cluster"] | None = Field(
        None, description="Match only account or only cluster alerts"
    )
    detectors: tuple[str, ...] = Field((), description="Match only these detectors")
    min_severity: Severity = Field("info", description="Effective severity at least this")
    min_score: float | None = Field(None, description="Score at least this")

    def matches(self, change: Mapping[str, Any], severity: str) -> bool:
        if self.entity_type is not None and change.get("entity_type") != self.entity_type:
            return False
        if self.detectors and change.get("detector") not in self.detectors:
            return False
        if severity_rank(severity) < severity_rank(self.min_severity):
            return False
        return self.min_score is None or float(change.get("score") or 0.0) >= self.min_score


class BreakerPolicy(_Model):
    max_actions: int = Field(20, ge=0, description="Throttles + suspensions allowed per interval")
    interval_s: float = Field(3600.0, gt=0, description="Length of the budget interval")


class Allowlist(_Model):
    """Ids never actioned. Matching is exact: the id on the alert must equal an entry
    character for character (no case folding, no trimming, no Unicode normalisation), so a
    look-alike org such as ``Org-Internal``, ``org-internal `` or one with a Cyrillic o (U+043E)
    is *not* allowlisted. An entry with surrounding whitespace, a control character or no
    characters at all is rejected when the policy loads: it could only be a typo that would
    silently never match."""

    accounts: frozenset[str] = Field(frozenset(), description="Account ids never actioned")
    orgs: frozenset[str] = Field(
        frozenset(), description="Org ids whose accounts are never actioned"
    )
    clusters: frozenset[str] = Field(
        frozenset(), description="Cluster ids (e.g. a known tool's template) never actioned"
    )

    @field_validator("accounts", "orgs", "clusters")
    @classmethod
    def _exact_ids(cls, ids: frozenset[str]) -> frozenset[str]:
        for i in ids:
            if not i or i != i.strip() or any(unicodedata.category(ch) == "Cc" for ch in i):
                raise ValueError(
                    f"allowlist entry {i!r}: empty, surrounding whitespace or a control "
                    "character (entries match exactly; fix the entry)"
                )
        return ids


DEFAULT_RULES = (
    Rule(entity_type="cluster", min_severity="critical", action="suspend_cluster"),
    Rule(entity_type="account", min_severity="critical", action="suspend_account"),
    Rule(min_severity="warning", action="flag"),
)


class Policy(_Model):
    """The policy file's content (deploy/policy.example.toml documents every field)."""

    dry_run: bool = Field(True, description="Record what would be done; do nothing")
    min_agreeing_detectors: int = Field(
        2, ge=1, description="Independent detectors needed for an automatic suspension"
    )
    auto_suspend_min_severity: Severity = Field(
        "critical", description="Detector severity needed for an automatic suspension"
    )
    fallback_action: Literal["none", "flag", "throttle"] = Field(
        "flag", description="What a suspension becomes when its gates are not met"
    )
    approval_above_members: int = Field(
        50, ge=0, description="Cluster suspensions above this many members wait for approval"
    )
    corroboration_share: float = Field(
        0.1, gt=0, le=1, description="Share of a cluster's members another detector must flag"
    )
    families: dict[str, str] = Field(
        default_factory=dict, description="Detector -> family; one family counts once"
    )
    breaker: BreakerPolicy = BreakerPolicy()
    allowlist: Allowlist = Allowlist()
    rules: tuple[Rule, ...] = DEFAULT_RULES

    def match(self, change: Mapping[str, Any], severity: str) -> tuple[int | None, Rule | None]:
        for i, rule in enumerate(self.rules):
            if rule.matches(change, severity):
                return i, rule
        return None, None


def load_policy(path: str | Path | None) -> Policy:
    """Read a policy TOML file; None gives the built-in default (dry-run)."""
    if path is None:
        return Policy()
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyError(f"policy file {str(path)!r}: not found") from None
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"policy file {str(path)!r}: not valid TOML: {err}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        ]
        raise PolicyError(f"policy file {str(path)!r} is invalid:\n" + "\n".join(lines)) from None


class Breaker:
    """Action budget: at most ``max_actions`` per ``interval_s``; once spent, closed to
    everything for one full interval (it does not flap back open action by action).

    Each spend is keyed (by the decision's idempotency key), so replaying the shared ledger
    (:mod:`streams.sinks.ledger`), including this process's own records, counts it once.

    >>> b = Breaker(max_actions=2, interval_s=60)
    >>> [b.allow(t) for t in (0, 1, 2, 3)]
    [(True, False), (True, False), (False, True), (False, False)]
    >>> b.is_open(30), b.allow(62 + 1)
    (True, (True, False))
    >>> r = Breaker(max_actions=2, interval_s=60)
    >>> r.restore_spend("k1", 0.0); r.restore_spend("k1", 0.0); r.restore_spend("k2", 1.0)
    >>> r.allow(5)
    (False, True)
    """

    def __init__(self, max_actions: int, interval_s: float) -> None:
        self.max_actions = max_actions
        self.interval_s = interval_s
        self._spent: dict[str, float] = {}
        self._open_until: float | None = None
        self._anon = 0

    @property
    def open_until(self) -> float | None:
        return self._open_until

    def is_open(self, now: float) -> bool:
        """True while the budget is spent (actions are refused)."""
        return self._open_until is not None and now < self._open_until

    def _key(self, key: str | None) -> str:
        if key is None:
            self._anon += 1
            return f"#{self._anon}"
        return key

    def allow(self, now: float, key: str | None = None) -> tuple[bool, bool]:
        """Spend one action if the budget allows: (allowed, tripped by this call)."""
        if self._open_until is not None:
            if now < self._open_until:
                return False, False
            self._open_until = None
            self._spent.clear()
        cut = now - self.interval_s
        if any(t <= cut for t in self._spent.values()):
            self._spent = {k: t for k, t in self._spent.items() if t > cut}
        if len(self._spent) >= self.max_actions:
            self._open_until = now + self.interval_s
            return False, True
        self._spent[self._key(key)] = now
        return True, False

    def record(self, now: float, key: str | None = None) -> None:
        """Count an action that a human approved (never refused)."""
        self._spent[self._key(key)] = now

    def restore_spend(self, key: str, ts: float) -> None:
        """A spend read back from the ledger (idempotent per key)."""
        if self._open_until is None or ts < self._open_until:
            self._spent[key] = ts

    def restore_open(self, until: float) -> None:
        """The breaker was opened (by this or another worker) until ``until``."""
        if self._open_until is None or until > self._open_until:
            self._open_until = until


@dataclass(slots=True)
class Decision:
    """One decision about one account (or, with ``count`` > 1, a summary of several)."""

    account_id: str | None
    action: ApiAction
    decision: Outcome
    reason: str
    idempotency_key: str | None = None
    rule: int | None = None
    count: int = 1


@dataclass(slots=True)
class Verdict:
    """What one alert change leads to."""

    decisions: list[Decision] = field(default_factory=list)
    #: True when this change spent the last of the budget: raise the budget alert once.
    budget_exceeded: bool = False
    #: Members of a cluster suspension that waits for approval (allowlist applied); also
    #: set on later updates of a pending alert, so the approval covers the latest members.
    pending_members: list[str] | None = None


def idempotency_key(alert_id: str, account_id: str, action: str) -> str:
    """``<alert_id>:<account_id>:<action>``: the same alert never repeats an action on an
    account, and escalating from flag to suspend is a new key (an idempotent API would
    otherwise answer the suspension with the flag's cached response)."""
    return f"{alert_id}:{account_id}:{action}"


class PolicyEngine:
    """Stateful side of the policy: breaker, decided keys and pending approvals.

    Parameters
    ----------
    policy
        The policy.
    clock
        Wall clock for the breaker (injected in tests).
    """

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.clock = clock
        self.breaker = Breaker(policy.breaker.max_actions, policy.breaker.interval_s)
        self._done: OrderedDict[str, None] = OrderedDict()
        # Strongest action taken per account, whatever the alert: two alerts about one
        # account must not suspend it twice.
        self._acted: OrderedDict[str, tuple[int, str, str]] = OrderedDict()
        self._pending: set[str] = set()
        # Ledger records of the decisions since the last pop_journal(): the suspension sink
        # writes them to the shared ledger before it acts (see streams/sinks/ledger.py).
        self._journal: list[tuple[str, dict[str, Any] | None]] = []

    def pop_journal(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Ledger records of the decisions taken since the last call, in order."""
        out, self._journal = self._journal, []
        return out

    def apply(self, key: str, value: dict[str, Any] | None) -> None:
        """Fold one ledger record in (from any worker, this one included; idempotent):
        decided keys, the strongest action per account, budget spends, the open breaker."""
        if value is None:
            return
        try:
            if key.startswith("k:"):
                idem = key[2:]
                ts = float(value["ts"])
                act = str(value["action"])
                self._remember(idem)
                if act in _STRENGTH:
                    acct = str(value["account"])
                    prev = self._acted.get(acct)
                    if prev is None or prev[0] <= _STRENGTH[act]:
                        self._acted_on(acct, act, idem)
                if value.get("budget"):
                    self.breaker.restore_spend(idem, ts)
            elif key.startswith("f:"):
                self._forget(key[2:])
            elif key == "b:open":
                self.breaker.restore_open(float(value["until"]))
        except (KeyError, TypeError, ValueError):
            # Signed by a worker yet malformed (a newer format?): skip, never crash the hook.
            return

    def _decided(self, key: str, account: str, action: str, now: float) -> None:
        self._remember(key)
        self._acted_on(account, action, key)
        self._journal.append((f"k:{key}", {
            "ts": now, "account": account, "action": action, "budget": action in _BUDGETED,
        }))

    def mark_pending(self, alert_ids: set[str] | list[str]) -> None:
        """Alerts already waiting for approval (loaded from the approval store at start)."""
        self._pending.update(alert_ids)

    def forget(self, key: str) -> None:
        """An execution failed for good: let a later update of the alert try again."""
        self._forget(key)
        self._journal.append((f"f:{key}", {"ts": self.clock()}))

    def _forget(self, key: str) -> None:
        self._done.pop(key, None)
        for acct, (_, k, _) in list(self._acted.items()):
            if k == key:
                del self._acted[acct]

    def _already(self, account: str, action: str) -> str | None:
        """Why ``action`` on ``account`` is redundant (a stronger one was taken), if it is."""
        prev = self._acted.get(account)
        if prev is not None and prev[0] >= _STRENGTH[action]:
            return f"account already {prev[2]} (idempotency key {prev[1]})"
        return None

    def _acted_on(self, account: str, action: str, key: str) -> None:
        self._acted[account] = (_STRENGTH[action], key, action)
        self._acted.move_to_end(account)
        if len(self._acted) > _DONE_KEYS:
            self._acted.popitem(last=False)

    def _remember(self, key: str) -> bool:
        """False when ``key`` was already decided; remember it otherwise."""
        if key in self._done:
            self._done.move_to_end(key)
            return False
        self._done[key] = None
        if len(self._done) > _DONE_KEYS:
            self._done.popitem(last=False)
        return True

    def _allowlisted(self, change: Mapping[str, Any], account: str) -> str | None:
        allow = self.policy.allowlist
        if account in allow.accounts:
            return "allowlisted account"
        org = _org_of(change, account)
        if org is not None and org in allow.orgs:
            return f"allowlisted org {org}"
        return None

    def decide(
        self,
        change: Mapping[str, Any],
        *,
        agreeing: Callable[[str], int],
        severity: str | None = None,
    ) -> Verdict:
        """Decisions for one alert change.

        ``agreeing(account_id)`` counts the independent detectors flagging that account;
        ``severity`` is the effective severity rules match on (default: the alert's own).
        """
        pol = self.policy
        out = Verdict()
        if change.get("state") == "resolved":
            return out
        alert_id = str(change["alert_id"])
        own = str(change.get("severity", "info"))
        severity = severity or own
        etype = change.get("entity_type")
        idx, rule = pol.match(change, severity)
        if rule is None or rule.action == "none":
            why = "no rule matches" if rule is None else f"rule {idx} says none"
            out.decisions.append(Decision(None, "none", "skipped", why, rule=idx))
            return out
        if etype == "cluster":
            if str(change.get("entity_id")) in pol.allowlist.clusters:
                out.decisions.append(
                    Decision(None, _API_ACTION[rule.action], "skipped", "allowlisted cluster",
                             rule=idx)
                )
                return out
            targets = [str(m) for m in change.get("members") or ()]
            action = "suspend_cluster" if rule.action == "suspend_account" else rule.action
        else:
            targets = [str(change["entity_id"])]
            action = "suspend_account" if rule.action == "suspend_cluster" else rule.action
        api = _API_ACTION[action]

        size = int(change.get("member_count") or len(targets))
        if action == "suspend_cluster" and size > pol.approval_above_members:
            allowed = []
            excluded = []
            for acct in targets:
                why = self._allowlisted(change, acct)
                if why:
                    excluded.append(Decision(acct, api, "skipped", why, rule=idx))
                else:
                    allowed.append(acct)
            if not allowed:
                # Every member is allowlisted: nothing for a human to approve.
                out.decisions.extend(excluded)
                return out
            out.pending_members = allowed
            if alert_id in self._pending:
                # The request stands; its member list follows the growing cluster.
                out.decisions.append(
                    Decision(None, api, "skipped", "already waiting for approval",
                             idempotency_key=alert_id, rule=idx, count=len(allowed))
                )
                return out
            out.decisions.extend(excluded)
            self._pending.add(alert_id)
            out.decisions.append(
                Decision(
                    None,
                    api,
                    "pending_approval",
                    f"cluster of {size} members > {pol.approval_above_members}: "
                    "needs `distillwatch actions approve`",
                    idempotency_key=alert_id,
                    rule=idx,
                    count=len(allowed),
                )
            )
            return out

        duplicates = 0
        now = self.clock()
        for acct in targets:
            why = self._allowlisted(change, acct)
            if why:
                out.decisions.append(Decision(acct, api, "skipped", why, rule=idx))
                continue
            act: ApiAction = api
            note = f"rule {idx}: {action}"
            if act == "suspend":
                n = agreeing(acct)
                if severity_rank(own) < severity_rank(pol.auto_suspend_min_severity):
                    act = pol.fallback_action
                    note = (f"suspension needs detector severity "
                            f"{pol.auto_suspend_min_severity}, got {own}: {act} instead")
                elif n < pol.min_agreeing_detectors:
                    act = pol.fallback_action
                    note = (f"suspension needs {pol.min_agreeing_detectors} independent "
                            f"detectors, got {n}: {act} instead")
                else:
                    note += f" ({n} independent detectors agree)"
            if act == "none":
                out.decisions.append(Decision(acct, "suspend", "skipped", note, rule=idx))
                continue
            key = idempotency_key(alert_id, acct, act)
            if key in self._done:
                duplicates += 1
                continue
            redundant = self._already(acct, act)
            if redundant:
                out.decisions.append(Decision(acct, act, "skipped", redundant, key, idx))
                continue
            if act in _BUDGETED:
                allowed_now, tripped = self.breaker.allow(now, key)
                if not allowed_now:
                    out.budget_exceeded |= tripped
                    if tripped:
                        self._journal.append(("b:open", {"until": self.breaker.open_until}))
                    out.decisions.append(
                        Decision(acct, act, "skipped", "action budget exceeded (breaker open)",
                                 idempotency_key=key, rule=idx)
                    )
                    continue
            self._decided(key, acct, act, now)
            outcome: Outcome = "dry_run" if pol.dry_run else "execute"
            out.decisions.append(Decision(acct, act, outcome, note, idempotency_key=key, rule=idx))
        if duplicates:
            out.decisions.append(
                Decision(None, api, "skipped", "already decided for this alert (idempotency)",
                         rule=idx, count=duplicates)
            )
        return out

    def decide_approved(
        self, alert_id: str, change: Mapping[str, Any], members: list[str]
    ) -> list[Decision]:
        """Decisions for a cluster suspension a human approved: the agreement gates and the
        breaker are the human's call (actions still count against the budget); allowlist,
        idempotency and dry-run still apply."""
        self._pending.discard(alert_id)
        now = self.clock()
        out = []
        for acct in members:
            why = self._allowlisted(change, acct)
            if why:
                out.append(Decision(acct, "suspend", "skipped", why))
                continue
            key = idempotency_key(alert_id, acct, "suspend")
            redundant = self._already(acct, "suspend")
            if redundant or key in self._done:
                out.append(Decision(acct, "suspend", "skipped", redundant or "already done", key))
                continue
            self._decided(key, acct, "suspend", now)
            self.breaker.record(now, key)
            outcome: Outcome = "dry_run" if self.policy.dry_run else "execute"
            out.append(Decision(acct, "suspend", outcome, "approved by a human", key))
        return out

    def close_pending(self, alert_id: str) -> None:
        """A pending approval was denied: a later update may ask again."""
        self._pending.discard(alert_id)


def _org_of(change: Mapping[str, Any], account: str) -> str | None:
    """The org of ``account`` if the alert carries it: ``org_id`` of an account alert (top
    level or in evidence) or ``member_orgs[account]`` of a cluster alert.

    Only a non-empty string counts: ``str()`` of a number or a list could otherwise be made
    to equal an allowlisted name. Never raises on a malformed alert (a crash would stop the
    hook for every alert behind it).
    """
    evidence = change.get("evidence")
    if not isinstance(evidence, Mapping):
        evidence = {}
    if change.get("entity_type") != "cluster":
        org = change.get("org_id") or evidence.get("org_id")
    else:
        orgs = change.get("member_orgs") or evidence.get("member_orgs")
        org = orgs.get(account) if isinstance(orgs, Mapping) else None
    return org if isinstance(org, str) and org else None
