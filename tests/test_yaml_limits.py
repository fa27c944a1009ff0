"""YAML bombs: alias expansion, nesting depth and file size are bounded in every loader, with file:line."""

from __future__ import annotations

import sys
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from plugin_modules import plugin_module

from bot._config import ConfigError, load_config
from bot._scenario import ScenarioError, load_scenario
from bot._yaml import MAX_BYTES, MAX_DEPTH, YamlError, load_yaml, load_yaml_text
from bot.sop._check import load_project

NOW = datetime.fromisoformat("2026-11-23T09:00:00+08:00")


def _bomb(levels: int = 9, key: str = "lol") -> str:
    """The classic "billion laughs": each level repeats the one before nine times."""
    lines = [f'{key}0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"{key}{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _bounded(load, *args, measure: bool = False):
    """Run a loader expecting it to refuse; return the error and the peak memory it used (if measured:
    tracing slows parsing down sevenfold, so one loader is measured; they share the same parser)."""
    if measure:
        tracemalloc.start()
    try:
        with pytest.raises((YamlError, ScenarioError)) as caught:
            load(*args)
        return caught.value, tracemalloc.get_traced_memory()[1] if measure else 0
    finally:
        tracemalloc.stop()


def _sop(root: Path, text: str) -> None:
    load_project_problems = load_project(root, load_config(root), now=NOW)[1]
    raise YamlError("sop", None, load_project_problems[0]) if load_project_problems else AssertionError(text)


@pytest.mark.parametrize("kind", ["scenario", "sop", "catalog", "bank", "plain"])
def test_an_alias_bomb_is_refused_with_file_and_line_in_bounded_memory(tmp_path, kind):
    text = _bomb()
    if kind == "sop":
        (tmp_path / "sop").mkdir()
        (tmp_path / "sop" / "x.yaml").write_text("targets: {rooms: [g1]}\nsteps: []\n" + text, encoding="utf-8")
        err, peak = _bounded(_sop, tmp_path, text)
        assert "sop/x.yaml:" in err.message and "内容太多" in err.message
    else:
        path = tmp_path / f"{kind}.yaml"
        path.write_text(text, encoding="utf-8")
        load = {"scenario": load_scenario, "catalog": plugin_module("points", "catalog").load_catalog,
                "bank": plugin_module("quiz", "bank").load_bank, "plain": load_yaml}[kind]
        err, peak = _bounded(load, path, measure=kind == "plain")
        assert err.file == str(path) and err.line is not None and 1 <= err.line <= 9
        assert "内容太多" in err.message
    assert peak < 200_000_000, peak


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000,
    "a: " + "{b: " * 5000 + "1" + "}" * 5000,
    "".join(f"{'  ' * i}k{i}:\n" for i in range(300)) + "  " * 300 + "v",
    "".join(f"{'  ' * i}- \n" for i in range(300)),
])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(text):
    with pytest.raises(YamlError) as caught:
        load_yaml_text(text, "deep.yaml")
    assert caught.value.file == "deep.yaml" and caught.value.line is not None
    assert f"嵌套太深（最多 {MAX_DEPTH} 层）" in caught.value.message


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1), encoding="utf-8")
    with pytest.raises(YamlError, match="文件太大"):
        load_yaml(path)


def test_ordinary_anchors_and_merge_keys_still_work():
    doc = load_yaml_text("base: &base {at: '08:00', kind: 通知}\nstep:\n  <<: *base\n  id: m\nlist: [*base, *base]\n")
    assert doc.data["step"] == {"at": "08:00", "kind": "通知", "id": "m"}
    assert doc.data["list"] == [{"at": "08:00", "kind": "通知"}] * 2
    assert doc.line("step", "id") == 4


@pytest.mark.parametrize("recursion_limit", [None, 100_000])  # py_ecc (lottery beacon) raises it process-wide
def test_deeply_nested_config_is_a_config_error_with_a_line(tmp_path, recursion_limit):
    (tmp_path / "qunbot.toml").write_text('[bot]\nname = "x[[["\n\n[plugins]\nx = ' + "[" * 3000 + "]" * 3000 + "\n",
                                          encoding="utf-8")
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit or before)
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
    finally:
        sys.setrecursionlimit(before)
    assert caught.value.line == 5 and "嵌套太深" in caught.value.message
