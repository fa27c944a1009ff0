"""guard over a real Wechaty puppet service: a QR poster and an ad are caught, the poster removed on the service."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest
from wechaty_peer.driver import Peer, require_peer

from bot._clock import RealClock
from bot._config import load_config
from bot._runtime import Runtime
from bot.adapters import make_adapter

require_peer()

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

ROOM = "g1@chatroom"
REPO = Path(__file__).resolve().parents[2]


def _qr_poster() -> bytes:
    """A poster with a QR code in its corner, as ad accounts post them."""
    import segno
    from PIL import Image, ImageDraw

    poster = Image.new("RGB", (480, 720), (250, 230, 220))
    ImageDraw.Draw(poster).rectangle((30, 40, 450, 120), fill=(200, 60, 60))
    code = io.BytesIO()
    segno.make("https://u.wechat.com/AD", error="m").save(code, kind="png", scale=5, border=2)
    poster.paste(Image.open(code).convert("RGB"), (300, 540))
    out = io.BytesIO()
    poster.save(out, format="PNG")
    return out.getvalue()


def _project(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copytree(REPO / "scripts_templates", path / "scripts_templates")
    (path / "data").mkdir()
    (path / "data" / "guard.yaml").write_text("banned_words: [兼职刷单]\n", encoding="utf-8")
    (path / "qunbot.toml").write_text(f'''
[bot]
name = "小完子"

[database]
url = "sqlite:///data/bot.db"

[[accounts]]
id = "wx1"
adapter = "wechaty"
token_env = "QB_TEST_TOKEN"
endpoint_env = "QB_TEST_ENDPOINT"

[pacing]
min_interval = 0
jitter = 0
room_interval = 0

[plugins]
dirs = ["{(REPO / "plugins").as_posix()}"]
enabled = ["guard"]

[plugins.guard]
remove_after = 2
newcomer_remove_after = 0
''', encoding="utf-8")
    return path


async def test_an_ad_poster_is_warned_then_removed_on_the_service(tmp_path, monkeypatch):
    peer = await Peer.start()
    try:
        for contact_id, name in [("bot", "小完子"), ("owner1", "群主"), ("u1", "Alice"), ("u2", "Bob")]:
            await peer.cmd("contact", id=contact_id, name=name)
        await peer.cmd("room", id=ROOM, topic="测试群", members=["bot", "owner1", "u1", "u2"], owner="owner1",
                       admins=["owner1"])
        await peer.cmd("login", id="bot")
        project = _project(tmp_path / "proj")
        monkeypatch.setenv("QB_TEST_TOKEN", peer.token)
        monkeypatch.setenv("QB_TEST_ENDPOINT", peer.endpoint)
        config = load_config(project)
        clock = RealClock(config.bot.tz)
        runtime = Runtime(project, config, clock=clock,
                          adapters={"wx1": make_adapter(config.accounts[0], clock, project=project, config=config)})
        await runtime.start()
        try:
            await peer.cmd("say", **{"from": "owner1"}, room=ROOM, text="新品上架 https://t.cn/new")  # exempt
            await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="兼职刷单，日结")
            warning = await peer.wait_for(lambda r: r["event"] == "sent" and "请勿" in r.get("text", ""))
            assert warning["text"].startswith("@Bob ⚠️ 请勿在群里发违禁词") and warning["mentions"] == ["u2"]
            poster = base64.b64encode(_qr_poster()).decode()
            await peer.cmd("image", **{"from": "u1"}, room=ROOM, name="poster.png", base64=poster)
            qr = await peer.wait_for(lambda r: r["event"] == "sent" and "二维码" in r.get("text", ""))
            assert qr["text"].startswith("@Alice ⚠️ 请勿在群里发二维码图片")
            assert not list((project / "data" / "inbox").glob("*"))   # the image is not kept after the check
            await peer.cmd("say", **{"from": "u2"}, room=ROOM, text="加我 138 1234 5678 领券")
            removal = await peer.wait_for(lambda r: r["event"] == "action")
            assert removal == {"event": "action", "action": "remove_member", "room": ROOM, "member": "u2"}
            assert not [r for r in peer.records if r["event"] == "sent" and "t.cn" in r.get("text", "")]
        finally:
            await runtime.stop()
            await clock.aclose()
    finally:
        await peer.close()
