"""The detection path shared by the streaming worker and offline ``replay``:
events → windows → features → detectors → findings (→ alerts, for replay).

The worker calls :meth:`Detection.add` per event and :meth:`Detection.advance` on the
watermark or a timer, and sends the findings to the alert agent, which owns an
:class:`~detectors.alerts.AlertBook`. :class:`Monitor` chains both for offline use, so the two
paths run the same code.

Examples
--------
>>> from detectors.events import Event
>>> mon = Monitor(window_s=60, lateness_s=0, account_grace=3)
>>> changes = []
>>> for minute in range(10):
...     n = 5 if minute < 8 else 200          # the account ramps 40x
...     for i in range(n):
...         changes += mon.add(Event("acct-1", minute * 60 + i * 0.1, "m", 50, 500))
>>> changes += mon.flush()
>>> [(c["state"], c["entity_id"], c["detector"]) for c in changes][:1]
[('opened', 'acct-1', 'account_baseline')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from detectors.alerts import AlertBook
from detectors.baseline import AccountBaseline
from detectors.events import Event
from detectors.features import window_features
from detectors.findings import Finding
from detectors.windows import ClosedWindow, Windower

__all__ = ["Detection", "Monitor"]


class Detection:
    """Windows, features and detectors for every account (and, later, cluster).

    Parameters
    ----------
    window_s, lateness_s
        Event-time window length and allowed lateness (see :class:`~detectors.windows.Windower`).
    account_grace
        Active windows an account's own baseline learns before it can fire.
    account_threshold
        Baseline score at which an account-window becomes a finding.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        lateness_s: float = 10.0,
        account_grace: int = 5,
        account_threshold: float = 6.0,
    ) -> None:
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.account_grace = account_grace
        self.account_threshold = account_threshold
        self.windower = Windower(window_s, lateness_s)
        self._baselines: dict[str, AccountBaseline] = {}
        self.windows_closed = 0

    @property
    def active_accounts(self) -> int:
        return len(self._baselines)

    def add(self, ev: Event) -> bool:
        """Count one event; False when it was late or a duplicate."""
        return self.windower.add(ev)

    def advance(self, watermark: float) -> list[Finding]:
        """Close every window the watermark allows and return their findings."""
        out: list[Finding] = []
        for closed in self.windower.close_until(watermark):
            self.windows_closed += 1
            out.extend(self._detect(closed))
        return out

    def _detect(self, closed: ClosedWindow) -> list[Finding]:
        out = []
        for account_id, acc in closed.accounts.items():
            x = window_features(acc)
            base = self._baselines.get(account_id)
            if base is None:
                base = self._baselines[account_id] = AccountBaseline(
                    grace_period=self.account_grace, threshold=self.account_threshold
                )
            scores = base.signal_scores(x)
            score = max(scores.values())
            if score >= self.account_threshold:
                out.append(
                    Finding(
                        entity_type="account",
                        entity_id=account_id,
                        detector="account_baseline",
                        window_start=closed.start,
                        window_end=closed.end,
                        score=score,
                        threshold=self.account_threshold,
                        severity="critical" if score >= 2 * self.account_threshold else "warning",
                        evidence={
                            "features": x,
                            "baseline": base.baseline(),
                            "score": round(score, 3),
                            "threshold": self.account_threshold,
                            "signals": sorted(
                                ({"signal": k, "score": round(v, 3)} for k, v in scores.items()),
                                key=lambda s: -s["score"],
                            ),
                        },
                    )
                )
                # An anomalous window is not learned: the baseline must not absorb an attack.
                continue
            base.learn_one(x)
        return out


class Monitor:
    """Detection plus alert lifecycle in one object: the offline path (``replay``, tests)."""

    def __init__(
        self,
        window_s: float = 60.0,
        lateness_s: float = 10.0,
        account_grace: int = 5,
        account_threshold: float = 6.0,
        quiet_windows: int = 3,
        max_members: int = 10_000,
    ) -> None:
        self.detection = Detection(window_s, lateness_s, account_grace, account_threshold)
        self.alerts = AlertBook(window_s, quiet_windows, max_members)

    def _fold(self, findings: Iterable[Finding], watermark: float) -> list[dict[str, Any]]:
        changes = [c for f in findings if (c := self.alerts.observe(f)) is not None]
        changes.extend(self.alerts.tick(watermark))
        return changes

    def add(self, ev: Event) -> list[dict[str, Any]]:
        """Count one event; return alert changes from any windows it lets close."""
        self.detection.add(ev)
        wm = self.detection.windower.watermark
        return self._fold(self.detection.advance(wm), wm)

    def flush(self) -> list[dict[str, Any]]:
        """End of input: close every open window."""
        wm = self.detection.windower.watermark + self.detection.window_s + self.detection.lateness_s
        return self._fold(self.detection.advance(wm), wm)
