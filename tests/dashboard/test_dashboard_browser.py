"""End to end: the dashboard served by uvicorn, driven by headless Chromium (Debian chromium + chromium-driver).

It logs in, opens every page, checks each chart was drawn by Chart.js with the simulated week's numbers
and left pixels on its canvas, and saves a screenshot of each page under tests/artifacts/.
Without a login every page is refused. scripts/test installs the browser; on CI a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import uvicorn
from fleet_data import XSS, build_fleet, fleet_app
from week_data import REPO, ROOMS

from bot._config import load_config
from bot.dashboard import build_app

try:
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the tests skip (or fail on CI) in _browser_or_skip
    Select = WebDriverWait = None

ARTIFACTS = REPO / "tests" / "artifacts"
PASSWORD = "browser-test-pw"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = f"headless Chromium not available: missing {', '.join(missing)} (apt-get install chromium " \
                 f"chromium-driver; scripts/test does this)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1100", "--lang=zh-CN", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=DRIVER)
    return webdriver.Chrome(options=options, service=service)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _guard_records(url: str, at) -> None:
    """Two guard detections in g1 (the table exists once the app loaded the guard plugin), once per database."""
    from sqlalchemy import text

    from bot._db import make_engine

    rows = [("e-browser-1", "qrcode", "二维码", at - timedelta(hours=2)), ("e-browser-2", "link", "链接", at)]
    with make_engine(url).begin() as conn:
        for event, rule, label, when in rows:
            conn.execute(text(
                "INSERT INTO guard_record (room_id, member_id, event_id, rule, label, evidence_hash, action, strike, "
                "revoked, created_at) SELECT 'g1', 'a1', :event, :rule, :label, 'ab12', 'warn', 1, false, :at "
                "WHERE NOT EXISTS (SELECT 1 FROM guard_record WHERE event_id = :event)"),
                {"event": event, "rule": rule, "label": label,
                 "at": when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")})


def _serve(app):  # type: ignore[no-untyped-def]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # polling a real server's readiness, not standing in for synchronisation
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def served(week_db):
    url, week = week_db
    environ = {"QUNBOT_DASHBOARD_PASSWORD": PASSWORD}
    app = build_app(REPO, load_config(REPO), db_url=url, now=lambda: week.end, environ=environ)
    _guard_records(url, week.end)
    server, thread, base = _serve(app)
    yield base, week
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def served_fleet(tmp_path):
    url = f"sqlite:///{tmp_path}/fleet.db"
    app = fleet_app(url, PASSWORD)
    build_fleet(url)
    server, thread, base = _serve(app)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    driver = _browser_or_skip()
    yield driver
    driver.quit()


CHART_STATE = """
const out = {};
for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
  const chart = Chart.getChart(canvas);
  let painted = 0;
  if (chart) {
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
  }
  out[canvas.dataset.chart] = chart ? {type: chart.config.type, labels: chart.data.labels,
    data: chart.data.datasets.map(d => d.data), painted: painted} : null;
}
return out;
"""


def _screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def _open(driver, base: str, path: str, shot: str) -> dict:
    driver.get(base + path)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.current_url == base + path, f"{path} redirected to {driver.current_url}"
    state = driver.execute_script(CHART_STATE)
    _screenshot(driver, shot)
    for name, chart in state.items():
        assert chart is not None, f"{path}: chart {name} was not drawn"
        assert chart["painted"] > 500, f"{path}: chart {name} left its canvas blank"
    return state


def test_refused_without_login(served, browser):
    base, _ = served
    for path in ("/", "/rooms/g1", "/sop", "/draws", "/variants", "/guard", "/?q=*&sort=-members&page=2"):
        browser.get(base + path)
        assert browser.current_url.startswith(base + "/login"), path
        assert browser.find_elements("id", "password") and "完子会员" not in browser.page_source
    browser.find_element("id", "password").send_keys("not-the-password")
    browser.find_element("id", "login").click()
    error = WebDriverWait(browser, 15).until(lambda d: d.find_elements("id", "login-error"))
    assert error[0].text == "密码不对" and browser.current_url.startswith(base + "/login")
    _screenshot(browser, "login-refused.png")


def test_every_page_with_charts_of_the_simulated_week(served, browser):
    base, week = served
    browser.get(base + "/draws")
    browser.find_element("id", "password").send_keys(PASSWORD)
    browser.find_element("id", "login").click()
    WebDriverWait(browser, 15).until(lambda d: not d.current_url.startswith(base + "/login"))
    assert browser.current_url == base + "/draws"  # back where the login started

    days = [week.end.date() - timedelta(days=13 - i) for i in range(14)]
    overview = _open(browser, base, "/", "overview.png")
    assert set(overview) == {"members", "joins", "messages", "signins", "sent"}  # totals across all groups
    assert overview["messages"]["labels"] == [f"{d.month}/{d.day}" for d in days]
    assert overview["messages"]["data"] == [[sum(week.messages[room][d] for room in ROOMS) for d in days]]
    assert overview["signins"]["data"] == [[sum(week.signins[room][d] for room in ROOMS) for d in days]]
    assert overview["joins"]["data"] == [[week.joins[d] for d in days], [week.leaves[d] for d in days]]
    assert sum(overview["messages"]["data"][0]) > 100 and sum(overview["sent"]["data"][0]) > 0
    totals = browser.find_element("id", "totals")
    assert browser.find_element("id", "rooms").location["y"] > totals.location["y"]  # totals first
    assert [r.text.split()[0] for r in browser.find_elements("css selector", "#rooms tbody tr")] == \
        [ROOMS[r][0] for r in ROOMS]
    field = browser.find_element("name", "q")  # the filter form works by a plain GET
    field.send_keys("*2群")
    browser.find_element("id", "filter").click()
    WebDriverWait(browser, 15).until(lambda d: "q=" in d.current_url)
    assert [r.text.split()[0] for r in browser.find_elements("css selector", "#rooms tbody tr")] == ["完子会员2群"]
    browser.get(base + "/")
    browser.find_element("css selector", 'a.sort[data-sort="messages"]').click()  # largest first
    WebDriverWait(browser, 15).until(lambda d: "sort=-messages" in d.current_url)
    rows = browser.find_elements("css selector", "#rooms tbody tr")
    said = [int(r.find_elements("tag name", "td")[4].text) for r in rows]
    assert said == sorted(said, reverse=True) and said[0] > 0
    _screenshot(browser, "overview-sorted.png")

    room = _open(browser, base, "/rooms/g1", "room-g1.png")
    share, funnel = room["share"]["data"][0], room["funnel"]["data"][0]
    assert share[0] > 0 and sum(share) == sum(funnel)
    assert funnel[2] + funnel[3] == 2  # a1 and a2 bought (a2's purchase has no room: it counts in every room)
    assert dict(zip(room["tags"]["labels"], room["tags"]["data"][0], strict=True))["达人"] == 2  # set by hand
    rows = browser.find_elements("css selector", "#top-members tbody tr")
    assert len(rows) == 10 and "active" in rows[0].text

    _open(browser, base, "/sop", "sop-calendar.png")
    calendar = browser.find_element("id", "sop-calendar").text
    assert calendar.count("daily.morning") == 7 and "12:30" in calendar

    _open(browser, base, "/draws", "draws.png")
    verify = browser.find_elements("css selector", "#draws td.verify")
    assert [v.text for v in verify] == ["✔ 一致"] * week.draws
    assert "skincare" in browser.find_element("id", "quiz").text

    variants = _open(browser, base, "/variants", "variants.png")
    assert variants["variants-0"]["data"] == [[week.noon_replies["g1"] / 5, week.noon_replies["g2"] / 5]]

    browser.find_element("id", "nav-guard").click()  # the guard plugin's table exists: its page is linked
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(base + "/guard"))
    _open(browser, base, "/guard", "guard.png")
    records = browser.find_elements("css selector", "#guard-records tbody tr")
    assert len(records) == 2 and "二维码" in records[1].text and "链接" in records[0].text
    Select(browser.find_element("name", "rule")).select_by_value("qrcode")
    browser.find_element("id", "guard-apply").click()
    WebDriverWait(browser, 15).until(lambda d: "rule=qrcode" in d.current_url)
    records = browser.find_elements("css selector", "#guard-records tbody tr")
    assert len(records) == 1 and "二维码" in records[0].text and "阿1" in records[0].text

    browser.find_element("link text", "退出").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(base + "/login"))
    browser.get(base + "/")
    assert browser.current_url.startswith(base + "/login")


def _login(browser, base: str) -> None:
    browser.get(base + "/")
    browser.find_element("id", "password").send_keys(PASSWORD)
    browser.find_element("id", "login").click()
    WebDriverWait(browser, 15).until(lambda d: not d.current_url.startswith(base + "/login"))


def _names(browser) -> list[str]:
    return [a.text for a in browser.find_elements("css selector", "#rooms tbody tr td:first-child a")]


def test_a_fleet_of_groups_pages_filters_and_flags_quiet_ones(served_fleet, browser):
    base = served_fleet
    _login(browser, base)
    overview = _open(browser, base, "/", "overview-fleet.png")
    assert sum(overview["members"]["data"][0]) > 0
    first = _names(browser)
    assert len(first) == 50 and XSS in first  # the markup topic is shown as text
    numbered = [n for n in first if n.startswith("完子会员")]
    assert numbered == [f"完子会员{i}" for i in range(len(numbered))]  # 0, 1, 2 … not 0, 1, 10, 100
    assert [a.text for a in browser.find_elements("css selector", "#quiet tbody a")] == ["冷q-dead", "冷q-half"]

    browser.find_element("css selector", "#room-pages a[rel=next]").click()  # pages are plain links
    WebDriverWait(browser, 15).until(lambda d: "page=2" in d.current_url)
    second = [n for n in _names(browser) if n.startswith("完子会员")]
    assert second[0] == f"完子会员{len(numbered)}" and len(second) == 50

    Select(browser.find_element("name", "tag")).select_by_value("vip")
    Select(browser.find_element("name", "account")).select_by_value("a1")
    browser.find_element("id", "filter").click()
    WebDriverWait(browser, 15).until(lambda d: "tag=vip" in d.current_url)
    assert _names(browser) == [f"完子会员{i}" for i in range(0, 120, 10)]  # the filter starts again at page 1
    _screenshot(browser, "overview-fleet-filtered.png")
    browser.find_element("name", "quiet").click()
    browser.find_element("id", "filter").click()
    WebDriverWait(browser, 15).until(lambda d: "quiet=1" in d.current_url)
    assert _names(browser) == []
    assert "没有符合条件的群" in browser.find_element("id", "rooms").text
