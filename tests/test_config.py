"""qunbot.toml validation: errors name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot._config import ConfigError, load_config
from bot._loader import load_plugins, plugin_configs


def write(project: Path, text: str) -> None:
    (project / "qunbot.toml").write_text(text, encoding="utf-8")


def test_missing_file_means_defaults(project):
    config = load_config(project)
    assert config.bot.timezone == "Asia/Shanghai"
    assert config.accounts[0].id == "default"
    assert config.database.url.startswith("sqlite:///")


def test_wrong_type_names_key_and_line(project):
    write(project, '[bot]\nname = "x"\n\n[pacing]\nmin_interval = "fast"\n')
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert err.value.line == 5
    assert "pacing.min_interval" in err.value.message
    assert str(err.value).startswith(f"{project / 'qunbot.toml'}:5:")


def test_unknown_key_is_rejected_with_its_line(project):
    write(project, '[bot]\nname = "x"\ntimezon = "Asia/Shanghai"\n')
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert err.value.line == 3
    assert "bot.timezon" in err.value.message


def test_unknown_time_zone(project):
    write(project, '[bot]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="不认识的时区"):
        load_config(project)


def test_toml_syntax_error_has_line(project):
    write(project, '[bot]\nname = "x"\noperators = [\n\n[pacing\n')
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert err.value.line is not None


def test_duplicate_account_ids(project):
    write(project, '[[accounts]]\nid = "a"\n[[accounts]]\nid = "a"\n')
    with pytest.raises(ConfigError, match="id 不能重复"):
        load_config(project)


def test_unknown_plugin_in_enabled_list(project):
    write(project, '[plugins]\nenabled = ["nosuch"]\n')
    with pytest.raises(ConfigError) as err:
        load_plugins(project, load_config(project))
    assert err.value.line == 2
    assert "nosuch" in err.value.message


def test_plugin_settings_are_validated_per_room(project):
    plugins = project / "plugins"
    plugins.mkdir()
    (plugins / "greet.py").write_text(
        "from pydantic import BaseModel\nfrom bot import Plugin\n\n"
        "class Cfg(BaseModel):\n    delay: int = 10\n\nplugin = Plugin('greet', config=Cfg)\n",
        encoding="utf-8")
    write(project, '[plugins]\nenabled = ["greet"]\n\n[plugins.greet]\ndelay = 5\n\n'
                   '[rooms.g1.plugins.greet]\ndelay = 30\n\n[rooms.g2.plugins.greet]\ndelay = "soon"\n')
    config = load_config(project)
    found = load_plugins(project, config)
    with pytest.raises(ConfigError) as err:
        plugin_configs(project, config, found)
    assert "rooms.g2.plugins.greet.delay" in err.value.message
    assert err.value.line == 11
    write(project, '[plugins]\nenabled = ["greet"]\n\n[plugins.greet]\ndelay = 5\n\n'
                   '[rooms.g1.plugins.greet]\ndelay = 30\n')
    config = load_config(project)
    configs = plugin_configs(project, config, load_plugins(project, config))
    assert configs[("greet", None)].delay == 5
    assert configs[("greet", "g1")].delay == 30


def test_plugin_import_error_names_file_and_line(project):
    plugins = project / "plugins"
    plugins.mkdir()
    (plugins / "oops.py").write_text("from bot import Plugin\nplugin = Plugin('oops')\nx = 1 / 0\n",
                                     encoding="utf-8")
    (plugins / "syntax.py").write_text("def broken(:\n", encoding="utf-8")
    (plugins / "_private.py").write_text("raise SystemExit('never imported')\n", encoding="utf-8")
    write(project, '[plugins]\nenabled = ["oops"]\n')
    with pytest.raises(ConfigError) as err:
        load_plugins(project, load_config(project))
    assert err.value.line == 3 and err.value.file.endswith("oops.py")
    assert "ZeroDivisionError" in err.value.message
    write(project, '[plugins]\nenabled = ["syntax"]\n')
    with pytest.raises(ConfigError) as err:
        load_plugins(project, load_config(project))
    assert err.value.line == 1 and "syntax error" in err.value.message
    write(project, '[plugins]\nenabled = ["*"]\n')
    with pytest.raises(ConfigError):  # "*" loads all but the private one; oops still fails
        load_plugins(project, load_config(project))


def test_entry_point_plugins_are_discovered(project, monkeypatch, tmp_path):
    import importlib.metadata
    import sys

    pkg = tmp_path / "site" / "thirdparty_plugin.py"
    pkg.parent.mkdir()
    pkg.write_text("from bot import Plugin\nplugin = Plugin('shop')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(pkg.parent))
    entry = importlib.metadata.EntryPoint("shop", "thirdparty_plugin", "qunbot.plugins")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [entry] if group == "qunbot.plugins" else [])
    write(project, '[plugins]\nenabled = ["shop"]\n')
    [plugin] = load_plugins(project, load_config(project))
    assert plugin.name == "shop"
    sys.modules.pop("thirdparty_plugin", None)
