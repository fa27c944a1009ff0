"""examples/guard_and_faq.yaml through `qunbot simulate`: what the example's comments promise."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_guard_and_faq_example(tmp_path):
    result = CliRunner().invoke(main, ["--project", str(REPO), "simulate", str(REPO / "examples/guard_and_faq.yaml"),
                                       "--db", f"sqlite:///{tmp_path}/example.db"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    morning = [m for m in lines if m["at"] < "2026-11-23T10:30"]
    texts = [m.get("text", "") for m in morning]
    assert not any("shop.wanzi.example" in t or ("群主" in t and "请勿" in t) for t in texts)   # the owner's link
    faq = [t for t in texts if "敏感肌可以用" in t]
    assert len(faq) == 1 and faq[0].startswith("@Alice ")               # answered once in the cooldown
    warnings = [t for t in texts if "请勿" in t]
    assert [w.split("请勿在群里发")[1].split("，")[0] for w in warnings] == ["二维码图片", "手机号"]
    removals = [m["member"] for m in morning if m.get("action") == "remove_member"]
    assert removals == ["u2", "n1"]                                      # Bob at strike 3, the newcomer at once
    assert any("满 99 元包邮" in t for t in texts)
    stub = next(t for t in texts if "来源：" in t)
    assert "冷藏" in stub and "玻尿酸补水面膜.md" in stub
    assert any("不确定" in t for t in texts)                              # nothing in the files: no invention
    record = next(t for t in texts if "最近的风控记录" in t)
    assert record.count("\n") == 4 and "Bob 二维码图片 → 警告（第 1 次）" in record
