"""faq: fuzzy answers from data/faq.yaml measured on a labelled set, cooldowns, rooms, floods, broken edits,
`qunbot faq test`, and AI answers against a local OpenAI-compatible mock: grounding, refusal, budget,
timeout, server errors and the guard's check."""

from __future__ import annotations

import importlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from bot._loader import _import_file
from bot.cli import main
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}


def _module(sub: str) -> ModuleType:
    package = _import_file("faq", REPO / "plugins" / "faq" / "__init__.py")
    return importlib.import_module(f"{package.__name__}.{sub}")


@pytest.fixture
def faq_project(project: Path) -> Path:
    shutil.copytree(REPO / "scripts_templates" / "faq", project / "scripts_templates" / "faq")
    shutil.copytree(REPO / "scripts_templates" / "guard", project / "scripts_templates" / "guard")
    (project / "data").mkdir()
    shutil.copy(REPO / "data" / "faq.yaml", project / "data" / "faq.yaml")
    shutil.copytree(REPO / "data" / "knowledge", project / "data" / "knowledge")
    return project


def _harness(project: Path, plugins: tuple[str, ...] = ("faq",), **config: Any) -> BotHarness:
    return BotHarness(project, plugins=list(plugins),
                      settings={"plugins": {"dirs": [str(REPO / "plugins")], "faq": config}})


# --- matching quality ---------------------------------------------------------------------------


def test_precision_and_recall_on_the_labelled_set():
    """The figures docs/faq.md reports: 120 member-style questions against the 20 entries of data/faq.yaml."""
    matcher = _module("matching").FaqMatcher(_module("bank").load_bank(REPO / "data" / "faq.yaml").entries)
    cases = YAML(typ="safe").load((Path(__file__).parent / "faq_labelled.yaml").read_text(encoding="utf-8"))
    assert len(cases) >= 100 and len({c["expect"] for c in cases if c["expect"]}) == 20
    right = wrong = missed = 0
    for case in cases:
        found = matcher.best(case["q"], 70)
        got = found.entry.id if found else None
        right += got is not None and got == case["expect"]
        wrong += got is not None and got != case["expect"]
        missed += case["expect"] is not None and got != case["expect"]
    precision, recall = right / (right + wrong), right / (right + missed)
    assert precision >= 0.95, (precision, recall)
    assert recall >= 0.80, (precision, recall)


# --- through the runtime ------------------------------------------------------------------------------


async def test_a_question_is_answered_once_per_cooldown(faq_project):
    async with _harness(faq_project, cooldown="10m") as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "u1", "请问这款敏感肌可以用吗？")
        first = bot.pop()
        await bot.say("g1", "u2", "敏感肌能用不")
        second = bot.pop()
        await bot.advance("11m")
        await bot.say("g1", "u2", "敏感肌能用不")
        third = bot.pop()
        await bot.say("g1", "u1", "今天天气真好")
        chatter = bot.pop()
    assert first[0].mentions == ("u1",) and "敏感肌可以用" in first[0].text
    assert second == [] and third[0].mentions == ("u2",) and chatter == []


async def test_entries_for_some_rooms_only(faq_project):
    bank = faq_project / "data" / "faq.yaml"
    bank.write_text(bank.read_text(encoding="utf-8") + """
  - id: flash_only
    questions: [快闪什么时候结束]
    answer: 本场快闪今晚 22:00 结束。
    rooms: ["快闪*"]
""", encoding="utf-8")
    async with _harness(faq_project) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        bot.room("f1", "快闪1群", members=MEMBERS)
        await bot.say("g1", "u1", "快闪什么时候结束")
        await bot.say("f1", "u1", "快闪什么时候结束")
        sent = bot.pop()
    assert [(m.room_id, m.text) for m in sent] == [("f1", "@Alice 本场快闪今晚 22:00 结束。")]


async def test_quiet_while_the_room_floods(faq_project):
    async with _harness(faq_project, quiet_messages=5, quiet_seconds=10) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        for i in range(5):
            await bot.say("g1", f"m{i}", "哈哈哈" if i < 4 else "包邮吗")
        assert bot.pop() == []
        await bot.advance("1m")
        await bot.say("g1", "u1", "包邮吗")
        assert "满 99 元包邮" in bot.pop_text()


async def test_a_broken_edit_keeps_the_last_good_bank(faq_project, caplog):
    async with _harness(faq_project) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "能开发票吗")
        assert "电子发票" in bot.pop_text()
        (faq_project / "data" / "faq.yaml").write_text("entries:\n  - id: x\n    answer: [\n", encoding="utf-8")
        await bot.say("g1", "u2", "包邮吗")
        assert "满 99 元包邮" in bot.pop_text()
    assert "faq.yaml:" in caplog.text


def test_check_reports_a_broken_bank_with_its_line(faq_project):
    (faq_project / "data" / "faq.yaml").write_text(
        "entries:\n  - id: a\n    answer: 好\n    keywords: [x]\n  - id: a\n    answer: 也好\n    keywords: [y]\n",
        encoding="utf-8")
    problems = _module("bank")
    with pytest.raises(problems.YamlError) as err:
        problems.load_bank(faq_project / "data" / "faq.yaml")
    assert "faq.yaml:5" in str(err.value) and "重复" in str(err.value)


def test_faq_test_command_shows_the_entry_and_score(faq_project):
    (faq_project / "qunbot.toml").write_text(
        f'[plugins]\ndirs = ["{(REPO / "plugins").as_posix()}"]\nenabled = ["faq"]\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--project", str(faq_project), "faq", "test", "这款适合敏感肌吗"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "sensitive_skin" in first and "会回答" in first
    chatter = CliRunner().invoke(main, ["--project", str(faq_project), "faq", "test", "今天天气真好"])
    assert chatter.exit_code == 0 and "不会回答" in chatter.output.splitlines()[0]


# --- AI answers against a local OpenAI-compatible server ----------------------------------------------------


class MockAI:
    """A chat-completions endpoint on 127.0.0.1: records requests, answers what the test sets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: str = "早晚都可以用，洁面和爽肤水之后取 2～3 滴。"
        self.status = 200
        self.hang = threading.Event()
        self.release = threading.Event()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mock.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if mock.hang.is_set():
                    mock.release.wait(10)
                    return
                payload = ({"choices": [{"message": {"role": "assistant", "content": mock.reply}}]}
                           if mock.status == 200 else {"error": {"message": "overloaded"}})
                data = json.dumps(payload).encode()
                self.send_response(mock.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ai(monkeypatch) -> Iterator[MockAI]:
    monkeypatch.setenv("QB_TEST_AI_KEY", "sk-test")
    mock = MockAI()
    yield mock
    mock.close()


def _ai_settings(ai: MockAI, **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "base_url": ai.url, "model": "test-model", "api_key_env": "QB_TEST_AI_KEY",
            "timeout": 2, **extra}


async def test_ai_answers_from_the_files_and_names_the_source(faq_project, ai):
    async with _harness(faq_project, ai=_ai_settings(ai)) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 精华早晚都能用吗？手心温热再按吗", mentions=["bot"])
        sent = bot.pop()
    request = ai.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    prompt = request["body"]["messages"][1]["content"]
    assert "积雪草修护精华.md" in prompt and "手心温热" in prompt and request["body"]["model"] == "test-model"
    assert sent[0].mentions == ("u1",) and "早晚都可以用" in sent[0].text and "来源：积雪草修护精华.md" in sent[0].text


async def test_ai_is_not_asked_when_the_files_have_nothing(faq_project, ai):
    async with _harness(faq_project, ai=_ai_settings(ai)) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 今天股市怎么样？", mentions=["bot"])
        text = bot.pop_text()
    assert ai.requests == [] and "不确定" in text


async def test_an_invented_price_or_stock_is_refused(faq_project, ai):
    ai.reply = "这款精华现在 199 元，库存还有很多，早晚都可以用。"
    async with _harness(faq_project, ai=_ai_settings(ai)) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 精华早晚都能用吗？手心温热再按吗", mentions=["bot"])
        text = bot.pop_text()
    assert len(ai.requests) == 1 and "199" not in text and "不确定" in text


async def test_an_answer_breaking_a_guard_rule_is_withheld(faq_project, ai):
    ai.reply = "早晚都可以用，详情看 https://t.cn/xyz"
    async with _harness(faq_project, plugins=("guard", "faq"), ai=_ai_settings(ai)) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 精华早晚都能用吗？手心温热再按吗", mentions=["bot"])
        text = bot.pop_text()
    assert "t.cn" not in text and "不确定" in text


async def test_daily_budget_and_rate_limit(faq_project, ai):
    async with _harness(faq_project, ai=_ai_settings(ai, daily_budget=2, min_interval="1m")) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        question = "@小完子 精华早晚都能用吗？手心温热再按吗"
        await bot.say("g1", "u1", question, mentions=["bot"])
        await bot.say("g1", "u2", question, mentions=["bot"])     # within a minute: rate limited
        assert len(ai.requests) == 1
        for _ in range(2):
            await bot.advance("2m")
            await bot.say("g1", "u2", question, mentions=["bot"])
        assert len(ai.requests) == 2                               # the budget of 2 is used up
        await bot.advance_to("2026-11-24T09:00:00+08:00")          # a new day, a new budget
        await bot.say("g1", "u2", question, mentions=["bot"])
        assert len(ai.requests) == 3


@pytest.mark.parametrize("failure", ["timeout", "server_error"])
async def test_timeout_and_server_errors_answer_honestly(faq_project, ai, caplog, failure):
    if failure == "timeout":
        ai.hang.set()
    else:
        ai.status = 500
    async with _harness(faq_project, ai=_ai_settings(ai, timeout=0.5)) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 精华早晚都能用吗？手心温热再按吗", mentions=["bot"])
        text = bot.pop_text()
    assert "不确定" in text and "早晚" not in text
    assert ("超时" if failure == "timeout" else "HTTP 500") in caplog.text


async def test_the_stub_answers_offline(faq_project):
    async with _harness(faq_project, ai={"enabled": True, "base_url": "stub"}) as bot:
        bot.room("g1", "完子会员1群", members=MEMBERS)
        await bot.say("g1", "u1", "@小完子 面膜要冷藏吗", mentions=["bot"])
        text = bot.pop_text()
    assert "冷藏" in text and "来源：玻尿酸补水面膜.md" in text
