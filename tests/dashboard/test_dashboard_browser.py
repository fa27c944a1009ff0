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
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from week_data import REPO, ROOMS

from bot._config import load_config
from bot.dashboard import build_app

try:
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the tests skip (or fail on CI) in _browser_or_skip
    WebDriverWait = None

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


@pytest.fixture
def served(week_db):
    url, week = week_db
    environ = {"QUNBOT_DASHBOARD_PASSWORD": PASSWORD}
    app = build_app(REPO, load_config(REPO), db_url=url, now=lambda: week.end, environ=environ)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # polling a real server's readiness, not standing in for synchronisation
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", week
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
    for path in ("/", "/rooms/g1", "/sop", "/draws", "/variants"):
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
    assert set(overview) == {"members", "joins", "messages", "signins"}
    assert overview["messages"]["labels"] == [f"{d.month}/{d.day}" for d in days]
    assert overview["messages"]["data"] == [[week.messages[room][d] for d in days] for room in ROOMS]
    assert overview["signins"]["data"] == [[week.signins[room][d] for d in days] for room in ROOMS]
    assert overview["joins"]["data"] == [[week.joins[d] for d in days], [week.leaves[d] for d in days]]
    assert sum(map(sum, overview["messages"]["data"])) > 100  # a real week, not an empty chart

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

    browser.find_element("link text", "退出").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(base + "/login"))
    browser.get(base + "/")
    assert browser.current_url.startswith(base + "/login")
