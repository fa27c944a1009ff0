"""Templates receive data, not live objects: no method that changes state is reachable from a template."""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel
from sqlmodel import select

from bot import TemplateError
from bot._templates import Renderer
from bot.testing import BotHarness

REPO = Path(__file__).resolve().parents[1]
MEMBERS = {"owner1": "群主", "u1": "Alice", "u2": "Bob"}
# `is defined` keeps the template valid when the method is (rightly) out of reach, so the test
# observes the records rather than a failed render.
LOTTERY_ATTACK = """{% if draw.sqlmodel_update is defined %}{{ draw.sqlmodel_update({"seed": "chosen",
  "commitment": "COMMIT"}) or "" }}{% endif %}抽奖开始：{{ draw.prize }} 公平承诺 sha256(种子) = {{ draw.commitment }}
""".replace("COMMIT", hashlib.sha256(b"chosen").hexdigest())
LEDGER_ATTACK = """{% for row in rows %}{% if row.sqlmodel_update is defined %}{{ row.sqlmodel_update(
  {"actor_id": "u2", "reason": "伪造"}) or "" }}{% endif %}{{ row.amount }} {{ row.reason }}
{% endfor %}"""


def _project(tmp_path: Path, templates: dict[str, str]) -> Path:
    (tmp_path / "plugins").symlink_to(REPO / "plugins")
    shutil.copytree(REPO / "scripts_templates", tmp_path / "scripts_templates")
    for name, text in templates.items():
        path = tmp_path / "scripts_templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


async def test_a_lottery_template_cannot_replace_the_seed_or_the_commitment(tmp_path):
    project = _project(tmp_path, {"lottery/opened.j2": LOTTERY_ATTACK})
    async with BotHarness(project, plugins=["lottery"]) as bot:
        bot.room("g1", "抽奖群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "开始抽奖 奖品=口红 名额=1 口令=我要抽奖 时长=10m")
        opened = bot.pop_text()
        draws = sys.modules[bot.runtime.plugins["lottery"].timers["draw"].__module__].LotteryDraw
        with bot.db() as db:
            draw = db.exec(select(draws)).one()
    assert draw.seed != "chosen"
    assert draw.commitment == hashlib.sha256(draw.seed.encode()).hexdigest()
    assert draw.commitment in opened


async def test_a_points_template_cannot_rewrite_ledger_rows(tmp_path):
    project = _project(tmp_path, {"points/history.j2": LEDGER_ATTACK})
    async with BotHarness(project, plugins=["points"]) as bot:
        bot.room("g1", "签到群", members=MEMBERS, admins=["owner1"])
        await bot.say("g1", "owner1", "调整积分 @Alice +50 线下活动奖励", mentions=["u1"])
        bot.pop_text()
        await bot.say("g1", "owner1", "积分明细 @Alice", mentions=["u1"])
        assert "50 线下活动奖励" in bot.pop_text()
        service = bot.runtime.plugins["points"].service
        with bot.db() as db:
            rows = service.history(db, "g1", "u1")
    assert [(r.actor_id, r.reason) for r in rows] == [("owner1", "线下活动奖励")]


@dataclass
class Account:
    owner: str
    entries: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        self.owner = "closed"


class Settings(BaseModel):
    title: str = "群"
    tags: list[str] = ["a"]


@pytest.mark.parametrize("source", [
    "{{ account.close() }}",
    "{{ account.entries.append('x') }}",
    "{{ settings.model_copy(update={'title': 'x'}) }}",
    "{{ settings.__setattr__('title', 'x') }}",
])
def test_no_method_of_a_passed_object_is_reachable(tmp_path, source):
    renderer = Renderer([tmp_path], timezone=ZoneInfo("Asia/Shanghai"))
    account, settings = Account("u1", ["e1"]), Settings()
    with pytest.raises(TemplateError):
        renderer.render_string(source, account=account, settings=settings)
    assert account == Account("u1", ["e1"]) and settings == Settings()


def test_fields_and_properties_still_read_as_before(tmp_path):
    renderer = Renderer([tmp_path], timezone=ZoneInfo("Asia/Shanghai"))
    out = renderer.render_string("{{ a.owner }} {{ a.size }} {{ a.entries | join(',') }} {{ s.title }} "
                                 "{{ s['tags'][0] }}", a=Account("u1", ["e1", "e2"]), s=Settings())
    assert out.text == "u1 2 e1,e2 群 a"


def test_a_bound_method_passed_as_a_variable_is_refused(tmp_path):
    renderer = Renderer([tmp_path], timezone=ZoneInfo("Asia/Shanghai"))
    account = Account("u1")
    with pytest.raises(TemplateError, match="not methods"):
        renderer.render_string("{{ close() }}", close=account.close)
    assert account.owner == "u1"
