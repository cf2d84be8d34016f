"""The console's aiohttp application: routes, authentication, CSRF, pages and actions.

Roles: a *viewer* reads; an *approver* also decides suspensions, acknowledges, assigns and
marks false positives. Every POST carries the session's CSRF token (a hidden form field)
and is refused with 403 without it; the session cookie is ``SameSite=Strict`` and
``HttpOnly`` as well. Pages send a strict Content-Security-Policy (scripts and styles only
from /static) and refuse framing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from sqlalchemy import Engine, distinct, select

from streams.config import Config
from streams.console.audit import AuditPublisher, console_record
from streams.console.auth import Sessions, dummy_verify, verify_password
from streams.console.chart import timeline_svg
from streams.sinks.approvals import ApprovalError, Approvals
from streams.sinks.envelope import dashboard_link, runbook_link
from streams.store.queries import alert_actions, find_alert, list_alerts, timeline
from streams.store.schema import alerts as alerts_table
from streams.store.words import age, evidence_lines, num, utc

__all__ = ["build_app"]

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE, LOGIN_COOKIE = "dw_session", "dw_login"
FLASH = {
    "approve": "Suspension approved; the worker applies it within its approvals poll interval.",
    "deny": "Suspension denied.",
    "acknowledge": "Alert acknowledged.",
    "assign": "Alert assigned.",
    "false_positive": "Marked false positive; the verdict is on the labels topic.",
}
COLUMNS = [("severity", "severity"), ("entity", "alert"), ("ratio", "score / threshold"),
           ("members", "members"), ("harvest", "harvest"), ("age", "age")]
MAX_SHOWN_MEMBERS = 500
_FAILS_PER_WINDOW, _FAIL_WINDOW_S = 5, 300.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """Dependencies and handlers of one console."""

    def __init__(self, cfg: Config, engine: Engine, approvals: Approvals,
                 publisher: AuditPublisher) -> None:
        self.cfg = cfg
        self.c = cfg.console
        self.engine = engine
        self.approvals = approvals
        self.publisher = publisher
        secret = (self.c.session_secret.get_secret_value().encode()
                  if self.c.session_secret else secrets.token_bytes(32))
        self.sessions = Sessions(secret, self.c.session_ttl_s)
        self.users = {u.name: u for u in self.c.users}
        self.secure = (self.c.public_url or "").startswith("https://")
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self.jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined,
        )

    # --- plumbing ---------------------------------------------------------------------

    def render(self, request: web.Request, name: str, code: int = 200,
               **ctx: Any) -> web.Response:
        ctx.setdefault("flash", FLASH.get(request.query.get("done", "")))
        ctx.setdefault("error", None)
        html = self.jinja.get_template(name).render(
            me=request.get("me"), auth_mode=self.c.auth, **ctx)
        return web.Response(text=html, status=code, content_type="text/html")

    def who(self, request: web.Request) -> dict[str, Any] | None:
        if self.c.auth == "header":
            user = request.headers.get(self.c.user_header, "").strip()
            if not user or len(user) > 256:
                return None
            role = "approver" if user in self.c.approvers else "viewer"
            return {"user": user, "role": role, "csrf": self.sessions.header_csrf(user)}
        return self.sessions.read(request.cookies.get(COOKIE))

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication, CSRF, and security headers on every response."""
        try:
            resp = await self._guarded(request, handler)
        except web.HTTPException as exc:
            resp = exc
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/static/") or path in ("/healthz", "/favicon.ico"):
            return await handler(request)
        if path == "/login" and self.c.auth == "password":
            return await handler(request)
        me = self.who(request)
        if me is None:
            if self.c.auth == "header":
                raise web.HTTPUnauthorized(text=f"no {self.c.user_header} header: the console "
                                                "runs behind an authenticating proxy")
            if request.method == "GET":
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="log in first")
        request["me"] = me
        if request.method == "POST":
            form = await request.post()
            token = form.get("csrf")
            if not isinstance(token, str) or not secrets.compare_digest(token, me["csrf"]):
                log.warning("console: POST %s by %s without a valid CSRF token refused",
                            path, me["user"])
                return self.render(request, "error.html", 403,
                                   status="403: CSRF token missing or wrong",
                                   error="This form is stale or did not come from the "
                                         "console. Reload the page and try again.")
            request["form"] = form
        return await handler(request)

    async def db(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a blocking store or approvals call off the event loop."""
        return await asyncio.to_thread(fn, *args, **kw)

    # --- login ------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str | None = None,
                         status: int = 200) -> web.Response:
        nonce, token = self.sessions.login_token(request.cookies.get(LOGIN_COOKIE))
        resp = self.render(request, "login.html", status, login_token=token, error=error)
        resp.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict",
                        secure=self.secure, max_age=1800)
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return await self.login_page(request)
        form = await request.post()
        if not self.sessions.check_login_token(request.cookies.get(LOGIN_COOKIE),
                                               str(form.get("login_token") or "")):
            return await self.login_page(request, "The login form expired; try again.", 403)
        name, password = str(form.get("user") or "")[:128], str(form.get("password") or "")
        fails = self._fails[name]
        now = time.monotonic()
        while fails and fails[0] < now - _FAIL_WINDOW_S:
            fails.popleft()
        if len(fails) >= _FAILS_PER_WINDOW:
            return await self.login_page(request, "Too many failed logins; wait a few "
                                                  "minutes.", 429)
        user = self.users.get(name)
        if user is None:
            await asyncio.to_thread(dummy_verify, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, user.password_hash)
        if not ok:
            fails.append(now)
            log.warning("console: failed login for %r", name)
            return await self.login_page(request, "Wrong user name or password.", 401)
        fails.clear()
        assert user is not None
        resp = web.HTTPFound("/")
        resp.set_cookie(COOKIE, self.sessions.issue(user.name, user.role), httponly=True,
                        samesite="Strict", secure=self.secure, max_age=int(self.c.session_ttl_s))
        resp.del_cookie(LOGIN_COOKIE)
        log.info("console: %s logged in (%s)", user.name, user.role)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        resp = web.HTTPFound("/login")
        resp.del_cookie(COOKIE)
        return resp

    # --- pages ------------------------------------------------------------------------

    async def queue(self, request: web.Request) -> web.Response:
        q = request.query
        show = "all" if q.get("show") == "all" else "open"
        severity = q.get("severity") if q.get("severity") in ("critical", "warning",
                                                                 "info") else None
        detector = q.get("detector") or None
        sort = q.get("sort") if q.get("sort") in dict(COLUMNS) else "severity"
        limits = {k: _float(q.get(k)) for k in ("min_ratio", "min_members", "min_harvest",
                                                 "max_age_h")}
        rows = await self.db(list_alerts, self.engine, open_only=show == "open",
                             severity=severity, detector=detector)
        detectors = await self.db(self._detectors)
        now = time.time()
        for r in rows:
            r["ratio"] = r["score"] / r["threshold"] if r.get("threshold") else 0.0
            r["ratio_text"] = num(r["ratio"]) if r.get("threshold") else "-"
            r["members_text"] = num(r["member_count"]) if r.get("member_count") else "-"
            r["harvest_text"] = num(r["harvest_tokens"]) if r.get("harvest_tokens") else "-"
            r["age_s"] = now - r["opened_ts"]
            r["age_text"] = age(r["age_s"])
            r["opened_text"] = utc(r["opened_ts"])
        if limits["min_ratio"] is not None:
            rows = [r for r in rows if r["ratio"] >= limits["min_ratio"]]
        if limits["min_members"] is not None:
            rows = [r for r in rows if (r.get("member_count") or 0) >= limits["min_members"]]
        if limits["min_harvest"] is not None:
            rows = [r for r in rows if (r.get("harvest_tokens") or 0) >= limits["min_harvest"]]
        if limits["max_age_h"] is not None:
            rows = [r for r in rows if r["age_s"] <= limits["max_age_h"] * 3600]
        keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ratio": lambda r: -r["ratio"],
            "members": lambda r: -(r.get("member_count") or 0),
            "harvest": lambda r: -(r.get("harvest_tokens") or 0),
            "age": lambda r: -r["age_s"],
            "entity": lambda r: (r["entity_type"], r["entity_id"]),
        }
        if sort in keys:
            rows.sort(key=keys[sort])  # list_alerts already sorts by severity, then newest

        def sort_url(key: str) -> str:
            params = {k: v for k, v in q.items() if k not in ("sort", "done")}
            return "/?" + urlencode({**params, "sort": key})

        return self.render(request, "queue.html", rows=rows, show=show, severity=severity,
                           detector=detector, detectors=detectors, limits=limits,
                           sort=sort, columns=COLUMNS, sort_url=sort_url)

    def _detectors(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(distinct(alerts_table.c.detector))).scalars())

    async def _alert_or_404(self, request: web.Request) -> dict[str, Any]:
        a = await self.db(find_alert, self.engine, request.match_info["alert_id"])
        if a is None:
            raise web.HTTPNotFound(text="no such alert in the store")
        return a

    async def alert(self, request: web.Request) -> web.Response:
        a = await self._alert_or_404(request)
        changes = await self.db(timeline, self.engine, a["alert_id"])
        decisions = await self.db(alert_actions, self.engine, a["alert_id"])
        approval = await self.approvals.get(a["alert_id"])
        for c in changes:
            c["when"] = utc(c["ts"])
            c["score_text"] = num(c["score"])
            c["members_text"] = num(c["member_count"]) if c["member_count"] is not None else ""
            c["harvest_text"] = num(c["harvest_tokens"]) if c["harvest_tokens"] else ""
        decisions = group_decisions(decisions)
        members = a.get("members") or []
        end = a["resolved_ts"] or time.time()
        s = self.cfg.sinks
        return self.render(
            request, "alert.html", a=a, changes=changes, decisions=decisions,
            approval=approval,
            approval_created=utc(approval.get("created_ts")) if approval else "",
            chart=timeline_svg(changes), evidence=evidence_lines(a),
            opened=utc(a["opened_ts"]), age=age(end - a["opened_ts"]),
            score=num(a["score"]), threshold=num(a["threshold"]),
            harvest=num(a["harvest_tokens"]), members=members,
            shown_members=members[:MAX_SHOWN_MEMBERS],
            grafana_url=dashboard_link(s.grafana_url, {"window_start": a["opened_ts"],
                                                       "window_end": end}),
            runbook_url=runbook_link(s.runbook_url, a["detector"]),
        )

    async def members_csv(self, request: web.Request) -> web.Response:
        from streams.alerts_cmd import members_csv

        a = await self._alert_or_404(request)
        return web.Response(
            text=members_csv(a), content_type="text/csv",
            headers={"Content-Disposition":
                     f'attachment; filename="members-{_token(a["alert_id"])}.csv"'})

    # --- actions ----------------------------------------------------------------------

    def _approver(self, request: web.Request) -> dict[str, Any]:
        me = request["me"]
        if me["role"] != "approver":
            raise web.HTTPForbidden(text="approvers only: you are a viewer")
        return me  # type: ignore[no-any-return]

    async def _audit(self, request: web.Request, rec: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(self.publisher.audit(rec), 20)
        except Exception as err:
            log.error("console: audit record for %s %s not written: %s", rec["action"],
                      rec["alert_id"], err)
            raise web.HTTPServiceUnavailable(
                text="the audit record could not be written to Kafka; nothing was done"
            ) from None

    def _note(self, request: web.Request, field: str = "note") -> str:
        return str(request["form"].get(field) or "").strip()[:500]

    def _done(self, a: dict[str, Any], what: str) -> web.HTTPFound:
        return web.HTTPFound(f"/alerts/{quote(a['alert_id'], safe='')}?done={what}#approval")

    async def decide(self, request: web.Request) -> web.StreamResponse:
        me = self._approver(request)
        a = await self._alert_or_404(request)
        verdict = request["form"].get("verdict")
        if verdict not in ("approve", "deny"):
            raise web.HTTPBadRequest(text="verdict must be approve or deny")
        note = self._note(request)
        rec = await self.approvals.get(a["alert_id"])
        if rec is None or rec["status"] != "pending":
            raise web.HTTPConflict(text="no pending suspension for this alert (already decided?)")
        # Audit first: if Kafka does not take the record, nothing is decided.
        await self._audit(request, console_record(
            a, verdict, by=me["user"], role=me["role"], note=note,
            count=len(rec.get("members") or ())))
        try:
            await self.approvals.decide(a["alert_id"], approve=verdict == "approve",
                                        by=me["user"], note=note)
        except ApprovalError as err:
            raise web.HTTPConflict(text=str(err)) from None
        return self._done(a, verdict)

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        me = self._approver(request)
        a = await self._alert_or_404(request)
        await self._audit(request, console_record(a, "acknowledge", by=me["user"],
                                                  role=me["role"]))
        return self._done(a, "acknowledge")

    async def assign(self, request: web.Request) -> web.StreamResponse:
        me = self._approver(request)
        a = await self._alert_or_404(request)
        who = self._note(request, "assignee")[:128]
        await self._audit(request, console_record(a, "assign", by=me["user"],
                                                  role=me["role"], assignee=who or None))
        return self._done(a, "assign")

    async def false_positive(self, request: web.Request) -> web.StreamResponse:
        me = self._approver(request)
        a = await self._alert_or_404(request)
        note = self._note(request)
        await self._audit(request, console_record(a, "false_positive", by=me["user"],
                                                  role=me["role"], note=note))
        try:
            await asyncio.wait_for(self.publisher.label(a, by=me["user"], note=note), 20)
        except Exception as err:
            log.error("console: label for %s not written: %s", a["alert_id"], err)
            raise web.HTTPServiceUnavailable(text="recorded in the audit trail, but the label "
                                                  "could not be written; try again") from None
        return self._done(a, "false_positive")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)


def _token(text: str) -> str:
    """``text`` reduced to characters safe in a header parameter or a file name."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_"
                   for c in text)[:64]


def _float(v: str | None) -> float | None:
    """A filter value from the query string; anything that is not a finite number is
    no filter."""
    try:
        f = float(v) if v else None
    except ValueError:
        return None
    return f if f is not None and f == f and abs(f) != float("inf") else None


def group_decisions(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive audit records that say the same thing (one per account of a campaign)
    as one row: the first time, the number of records, the accounts summed.

    >>> rows = group_decisions([
    ...     {"ts": 1, "decision": "dry_run", "action": "flag", "reason": "r", "count": 1},
    ...     {"ts": 2, "decision": "dry_run", "action": "flag", "reason": "r", "count": 1},
    ...     {"ts": 3, "decision": "console", "action": "approve", "by": "a", "count": 2}])
    >>> [(r["decision"], r["records"], r["count"]) for r in rows]
    [('dry_run', 2, 2), ('console', 1, 2)]
    """
    out: list[dict[str, Any]] = []
    for d in decisions:
        key = tuple(d.get(k) for k in ("decision", "action", "reason", "by", "note"))
        if out and out[-1]["_key"] == key:
            out[-1]["records"] += 1
            out[-1]["count"] = (out[-1]["count"] or 0) + (d.get("count") or 0)
            continue
        out.append({**d, "_key": key, "records": 1, "when": utc(d["ts"])})
    return out


def build_app(cfg: Config, engine: Engine, approvals: Approvals,
              publisher: AuditPublisher) -> web.Application:
    """The console as an aiohttp application (the publisher starts and stops with it)."""
    c = Console(cfg, engine, approvals, publisher)
    app = web.Application(middlewares=[c.guard], client_max_size=64 * 1024)
    app["console"] = c
    app.router.add_get("/", c.queue)
    app.router.add_route("*", "/login", c.login)
    app.router.add_post("/logout", c.logout)
    app.router.add_get("/healthz", c.healthz)
    app.router.add_get("/favicon.ico", c.favicon)
    app.router.add_get("/alerts/{alert_id}", c.alert)
    app.router.add_get("/alerts/{alert_id}/members.csv", c.members_csv)
    app.router.add_post("/alerts/{alert_id}/decide", c.decide)
    app.router.add_post("/alerts/{alert_id}/ack", c.acknowledge)
    app.router.add_post("/alerts/{alert_id}/assign", c.assign)
    app.router.add_post("/alerts/{alert_id}/false-positive", c.false_positive)
    app.router.add_static("/static/", HERE / "static")

    async def on_startup(_app: web.Application) -> None:
        await publisher.start()
        await approvals.start()

    async def on_cleanup(_app: web.Application) -> None:
        await publisher.stop()
        await approvals.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
