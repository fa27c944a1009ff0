"""What a Wechaty account declares it can do, and what happens when its service cannot (no Node needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot._clock import RealClock
from bot._config import load_config
from bot._events import Outgoing
from bot.adapters import SendError, make_adapter

grpclib = pytest.importorskip("grpclib", reason="install the wechaty extra: pip install -e '.[wechaty]'")
from grpclib.const import Status  # noqa: E402
from grpclib.exceptions import GRPCError  # noqa: E402


class Unimplemented:
    """A puppet whose service answers UNIMPLEMENTED to room actions (as a service without them would)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def room_delete(self, room_id: str, member_id: str) -> None:
        self.calls.append("room_delete")
        raise GRPCError(Status.UNIMPLEMENTED, "Method not found: wechaty.Puppet/RoomDel")


def adapter_for(tmp_path: Path, monkeypatch):
    (tmp_path / "qunbot.toml").write_text('[bot]\nname = "小完子"\n\n[[accounts]]\nid = "wx1"\nadapter = "wechaty"\n'
                                          'token_env = "QB_T"\nendpoint_env = "QB_E"\n', encoding="utf-8")
    monkeypatch.setenv("QB_T", "t")
    monkeypatch.setenv("QB_E", "127.0.0.1:1")
    config = load_config(tmp_path)
    return make_adapter(config.accounts[0], RealClock(config.bot.tz), project=tmp_path, config=config)


def test_a_wechaty_account_declares_what_both_service_lines_do(tmp_path, monkeypatch):
    caps = adapter_for(tmp_path, monkeypatch).capabilities
    assert (caps.read_room_messages, caps.reply_at_will, caps.mention, caps.send_files, caps.remove_members,
            caps.set_topic, caps.direct_messages) == (True,) * 7
    assert not caps.posts_need_confirmation and not caps.welcome_by_template and caps.room_quota is None


async def test_an_action_the_service_does_not_implement_fails_loudly_and_is_no_longer_offered(tmp_path, monkeypatch):
    adapter = adapter_for(tmp_path, monkeypatch)
    adapter._puppet = puppet = Unimplemented()
    adapter._logged_in.set()
    removal = Outgoing(account="wx1", text="", room_id="g1@chatroom", action="remove_member", member_id="u2")
    with pytest.raises(SendError, match=r"the puppet service at 127\.0\.0\.1:1 cannot remove member \(the service "
                                        r"does not implement this call"):
        await adapter.send(removal)
    assert puppet.calls == ["room_delete"]
    assert adapter.capabilities.remove_members is False and adapter.capabilities.set_topic is True
    assert type(adapter).capabilities.remove_members is True  # another account on another service is not affected
