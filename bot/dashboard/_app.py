"""The dashboard web app (Starlette): server-rendered jinja2 pages, charts drawn by the bundled Chart.js.

Every page only reads. The one write is POST /api/purchases, which has its own bearer token and
exists only when that token is configured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot._config import ProjectConfig
from bot._models import Member
from bot._plugin import Plugin
from bot._sandbox import render_budget
from bot._templates import Renderer
from bot.dashboard import _data, _groups
from bot.dashboard._auth import COOKIE, Auth
from bot.dashboard._body import LOGIN_LIMIT, BodyTooLarge, read_body
from bot.dashboard._guard import ACTIONS, GuardPage, guard_page, has_guard
from bot.dashboard._purchases import purchase_endpoint
from bot.insight import InsightConfig, InsightService

HERE = Path(__file__).parent
OPEN_PATHS = ("/login", "/static/", "/api/purchases")
_WEEKDAYS = "一二三四五六日"


@dataclass
class Dashboard:
    project: Path
    config: ProjectConfig
    engine: Engine
    plugins: dict[str, Plugin]
    now: Callable[[], datetime]

    @property
    def tz(self) -> Any:
        return self.config.bot.tz


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["tojson_script"] = lambda value: jinja2.utils.markupsafe.Markup(json_for_script(value))
    return env


def json_for_script(value: Any) -> str:
    """JSON that cannot end or reopen a <script> element: `<`, `>`, `&` and the JS line separators escaped."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


class _LoginRequired(BaseHTTPMiddleware):
    def __init__(self, app: Any, auth: Auth) -> None:
        super().__init__(app)
        self.auth = auth

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith(OPEN_PATHS) or self.auth.valid(request.cookies.get(COOKIE)):
            return await call_next(request)
        if request.method == "GET":
            return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
        return JSONResponse({"error": "login required"}, status_code=401)


def create_app(dash: Dashboard, *, password: str, purchase_token: str | None = None,
               session_hours: float = 12.0) -> Starlette:
    """The ASGI app. `password` is required; without `purchase_token` there is no purchase endpoint."""
    auth = Auth(password, session_seconds=session_hours * 3600)
    env = _env()

    guard_seen: list[bool] = []  # once the guard table exists it stays (tables are never dropped)

    def show_guard() -> bool:
        if not guard_seen:
            with Session(dash.engine) as session:
                if has_guard(session):
                    guard_seen.append(True)
        return bool(guard_seen)

    def page(name: str, request: Request, **values: Any) -> HTMLResponse:
        values.setdefault("charts", {})
        html = env.get_template(name).render(path=request.url.path, now=dash.now().astimezone(dash.tz),
                                             show_guard=show_guard(), **values)
        return HTMLResponse(html)

    async def login(request: Request) -> Response:
        next_path = request.query_params.get("next", "/")
        next_path = next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"
        if request.method == "POST":
            address = request.client.host if request.client else ""
            if auth.locked(address):
                return HTMLResponse(env.get_template("login.html").render(
                    error="密码错误次数太多，请 5 分钟后再试", next=next_path), status_code=429)
            try:
                form = parse_qs((await read_body(request, LOGIN_LIMIT)).decode("utf-8", "replace"))
            except BodyTooLarge:
                return HTMLResponse(env.get_template("login.html").render(error="请求太大", next=next_path),
                                    status_code=413)
            if auth.check_password(form.get("password", [""])[0], address):
                response = RedirectResponse(next_path, status_code=303)
                response.set_cookie(COOKIE, auth.new_session(), max_age=int(auth.session_seconds), httponly=True,
                                    samesite="strict")
                return response
            return HTMLResponse(env.get_template("login.html").render(error="密码不对", next=next_path),
                                status_code=401)
        return HTMLResponse(env.get_template("login.html").render(error=None, next=next_path))

    async def logout(request: Request) -> Response:
        auth.revoke(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def overview(request: Request) -> Response:
        tags = {room_id: settings.tags for room_id, settings in dash.config.rooms.items()}

        def load() -> tuple[_groups.Overview, list[_data.FailedTimer]]:
            # off the event loop: `qunbot run --dashboard` shares it with the bot
            with Session(dash.engine) as session:
                return _groups.overview(session, dash.now(), dash.tz, tags), _data.failed_timers(session)

        data, failed = await run_in_threadpool(load)
        query = _groups.GroupQuery.parse(request.query_params)
        table = _groups.group_page(data.rooms, query)
        choices = {"tags": sorted({t for r in data.rooms for t in r.tags}),
                   "accounts": sorted({r.account for r in data.rooms})}

        def link(**changes: Any) -> str:
            return "/?" + urlencode(query.params(**changes)) + "#rooms"

        return page("overview.html", request, title="群概览", data=data, charts=data.charts, table=table,
                    query=query, choices=choices, link=link, sorts=_groups.SORTS, quiet_ratio=_groups.QUIET_RATIO,
                    quiet_floor=_groups.QUIET_FLOOR, failed_timers=failed)

    async def guard(request: Request) -> Response:
        def load() -> GuardPage | None:
            with Session(dash.engine) as session:
                return guard_page(session, request.query_params) if has_guard(session) else None

        data = await run_in_threadpool(load)
        if data is None:
            return page("missing.html", request, title="没有风控记录", what="风控记录（guard 插件没有启用）")
        params = {k: v for k, v in request.query_params.items() if k in ("room", "rule") and v}

        def link(page_number: int) -> str:
            return "/guard?" + urlencode({**params, "page": page_number})

        return page("guard.html", request, title="风控记录", data=data, params=params, link=link,
                    rule_names=dict(data.rules), actions=ACTIONS)

    async def room(request: Request) -> Response:
        with Session(dash.engine) as session:
            data = _data.room_page(session, request.path_params["room_id"], dash.now(), dash.tz)
        if data is None:
            return page("missing.html", request, title="没有这个群", what=request.path_params["room_id"])
        return page("room.html", request, title=data.topic or data.id, data=data, charts=data.charts)

    async def sop(request: Request) -> Response:
        # Loading and rendering admins' files is synchronous: off the event loop, so /login and the other
        # pages answer while it runs (each render is bounded by the render budget).
        from bot.adapters.wecom._report import post_counts

        calendar, problems, start = await run_in_threadpool(sop_calendar)
        confirmations = post_counts(dash.engine)
        return page("sop.html", request, title="SOP 日历", calendar=calendar, problems=problems, start=start,
                    confirmations=confirmations)

    def sop_calendar() -> tuple[list[dict[str, Any]], list[str], datetime]:
        from bot.sop._check import load_project
        from bot.sop._preview import _entries, _entry_lines

        start = dash.now().astimezone(dash.tz).replace(second=0, microsecond=0)
        files, problems = load_project(dash.project, dash.config, now=start)
        renderer = Renderer([dash.project / dash.config.templates_dir, _default_templates()], timezone=dash.tz,
                            globals={"bot_name": dash.config.bot.name}, budget=render_budget(dash.config.limits))
        days: dict[Any, list[dict[str, Any]]] = {}
        order = {name: index for index, name in enumerate(files)}
        entries = sorted((e for loaded in files.values() if loaded.sop.enabled
                          for e in _entries(loaded, start, start + timedelta(days=7))),
                         key=lambda e: (e.at, order[e.loaded.name], e.loaded.sop.steps.index(e.step)))
        for entry in entries:
            local = entry.at.astimezone(dash.tz)
            head, *body = _entry_lines(entry, local, dash.config, renderer, None)
            days.setdefault(local.date(), []).append({
                "time": local.strftime("%H:%M"), "step": f"{entry.loaded.name}.{entry.step.id}",
                "head": head.strip().removeprefix(local.strftime("%H:%M")).strip(),
                "text": "\n".join(line.strip() for line in body),
                "kind": entry.step.effective_kind, "joined": entry.joined})
        calendar = [{"date": d, "label": f"{d.month}月{d.day}日 周{_WEEKDAYS[d.weekday()]}", "entries": e}
                    for d, e in sorted(days.items())]
        return calendar, problems, start

    async def draws(request: Request) -> Response:
        lottery = dash.plugins.get("lottery")
        beacon = None
        if lottery is not None and lottery.config is not None:
            beacon = getattr(lottery.config.model_validate(dash.config.plugins.settings_for("lottery")), "beacon", None)
        with Session(dash.engine) as session:
            names = dict(session.exec(select(Member.id, Member.name)).all())
            draws = _data.draws(session, lottery.service if lottery else None, names, beacon)
            rounds = _data.quiz_rounds(session)
            polls = _data.polls(session)
        return page("draws.html", request, title="抽奖与答题", draws=draws, rounds=rounds, polls=polls,
                    lottery_enabled=lottery is not None)

    async def variants(request: Request) -> Response:
        from bot.sop._check import load_project

        files, _ = await run_in_threadpool(load_project, dash.project, dash.config, now=dash.now())

        def stats() -> list[_data.VariantRow]:
            with Session(dash.engine) as session:
                return _data.variant_stats(session, files)

        rows = await run_in_threadpool(stats)
        steps: dict[str, list[_data.VariantRow]] = {}
        for row in rows:
            steps.setdefault(f"{row.file}.{row.step}", []).append(row)
        charts = {f"variants-{i}": _data.chart("bar", [f"变体 {r.variant + 1}" for r in group], [
            {"label": "每条帖子 1 小时内的回复", "data": [round(r.per_post, 2) for r in group]}])
            for i, group in enumerate(steps.values())}
        return page("variants.html", request, title="变体对比", steps=list(steps.items()), charts=charts)

    routes = [
        Route("/", overview), Route("/rooms/{room_id}", room), Route("/sop", sop), Route("/draws", draws),
        Route("/variants", variants), Route("/guard", guard),
        Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if purchase_token:
        service = InsightService(InsightConfig.model_validate(dash.config.plugins.settings_for("insight")), dash.tz)
        routes.append(Route("/api/purchases", purchase_endpoint(dash.engine, service, purchase_token, dash.now),
                            methods=["POST"]))
    return Starlette(routes=routes, middleware=[Middleware(_LoginRequired, auth=auth)])


def _default_templates() -> Path:
    from bot._runtime import DEFAULT_TEMPLATES

    return DEFAULT_TEMPLATES
