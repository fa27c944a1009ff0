"""Every built-in adapter passes the same contract (bot/adapters/contract.py); here the simulated WeChat,
as itself and emulating each kind of account `emulate` offers, so the emulation is as honest as the real thing."""

from __future__ import annotations

from functools import partial

from bot.adapters._profiles import PROFILES
from bot.adapters.contract import AdapterContract, simulated_peer


class TestSimulated(AdapterContract):
    peer = staticmethod(simulated_peer)


class TestSimulatedAsPersonalWechat(AdapterContract):
    peer = staticmethod(partial(simulated_peer, capabilities=PROFILES["wechaty"]))


class TestSimulatedAsWorkPro(AdapterContract):
    peer = staticmethod(partial(simulated_peer, capabilities=PROFILES["workpro"]))


class TestSimulatedAsWeComOfficial(AdapterContract):
    peer = staticmethod(partial(simulated_peer, capabilities=PROFILES["wecom"]))
