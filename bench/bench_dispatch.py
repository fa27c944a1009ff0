"""Dispatch vs NoneBot2: room chatter through 20 keyword/regex handlers, both frameworks in one process.

Both get the same pre-built messages and the same 20 handlers (10 keywords, 10 regexes, one priority,
blocking, each handler only counts its calls), and each event is awaited to completion before the
next, so the figure is dispatch cost per event. qunbot runs its whole `Runtime.dispatch` (member
recording, room lock, listeners, matcher index, context, handler with timeout); NoneBot2 runs
`nonebot.message.handle_event`. Both frameworks' handler call counts must equal a plain reference count.

NoneBot2 is measured in four set-ups, to separate what is inherent from what is set-up:
  default     — as `nonebot.init()` leaves it: every event logged at SUCCESS (to a null sink here)
  quiet       — logging above SUCCESS, so no per-event log line is formatted
  one-matcher — quiet, and the 20 matchers replaced by one `on_message` matcher whose handler checks
                the 20 triggers itself (what a NoneBot2 user who cared about speed could write)
  no-matchers — quiet, no matchers at all: NoneBot2's fixed cost per event
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

KEYWORDS = ("签到", "积分", "抽奖", "打卡", "排行榜", "兑换", "帮助", "菜单", "优惠券", "客服")
PATTERNS = (
    r"^第(\d+)题",
    r"1[3-9]\d{9}",
    r"https?://\S+",
    r"^#(\w+)#",
    r"答案[:：]\s*([A-D])",
    r"^投票\s*(\d+)",
    r"(\d{1,2})月(\d{1,2})日",
    r"^查快递\s*([A-Z0-9]+)",
    r"[￥$]\s*(\d+)",
    r"^订单号\s*(\d{6,})",
)
CHATTER = ("哈哈", "今天好冷", "早上好", "谁知道这个怎么弄", "收到", "好的好的", "辛苦了", "同意", "明天见",
           "这个颜色好看", "孩子上学去了", "晚饭吃什么", "在吗", "周末去爬山", "我也想要", "太难了", "👍",
           "刚下班", "好久不见", "[捂脸]", "this is great", "ok", "在路上了", "等一下", "有没有人一起")
MATCHING = ("我要签到", "积分多少", "抽奖开始了吗", "打卡", "看看排行榜", "怎么兑换", "帮助", "发个菜单",
            "优惠券在哪", "找客服", "第3题选什么", "电话13812345678", "看 https://example.com/a", "#话题#讨论",
            "答案：B", "投票 2", "12月12日有活动", "查快递 SF1234567", "只要￥99", "订单号 20261123")


def messages(count: int, *, match_every: int = 20, seed: int = 7) -> list[str]:
    """Ordinary chatter, one message in `match_every` written to hit exactly one handler."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        if n % match_every == match_every - 1:
            out.append(MATCHING[(n // match_every) % len(MATCHING)])
        else:
            out.append(" ".join(rng.choice(CHATTER) for _ in range(rng.randint(1, 3))))
    return out


def reference_calls(texts: Sequence[str]) -> int:
    """Handler calls a correct dispatcher makes: one per (message, trigger that fits it)."""
    compiled = [re.compile(p) for p in PATTERNS]
    return sum(sum(word in text for word in KEYWORDS) + sum(bool(p.search(text)) for p in compiled)
               for text in texts)


@dataclass
class Run:
    events: int
    seconds: float
    handler_calls: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


# --- qunbot --------------------------------------------------------------------------------


async def run_qunbot(texts: Sequence[str], *, rooms: int, members: int, span: float = 3600.0) -> Run:
    """The messages arrive evenly over `span` seconds of bot time; the virtual clock follows them, so
    time-based parts of dispatch (speaker writes every 10 min, the per-member command limit) work as live."""
    import tempfile
    from datetime import timedelta
    from pathlib import Path

    from bot import Plugin
    from bot._events import MemberRef, RoomMessage
    from bot.testing import BotHarness

    calls = 0

    async def count(ctx: Any) -> None:
        nonlocal calls
        calls += 1

    plugin = Plugin("bench_dispatch")
    for word in KEYWORDS:
        plugin.on_keyword(word).handle(count)
    for pattern in PATTERNS:
        plugin.on_regex(pattern).handle(count)
    project = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    harness = BotHarness(project, plugins=[plugin])
    for r in range(rooms):
        harness.room(f"g{r}", f"群{r}", members={f"u{r}_{m}": f"成员{m}" for m in range(members)})
    async with harness:
        runtime, clock, start = harness.runtime, harness.sim.clock, harness.now
        gap = span / len(texts)
        events = [RoomMessage(account=harness.sim.account, id=f"m{n}", time=start + timedelta(seconds=n * gap),
                              room_id=f"g{n % rooms}", sender=MemberRef(f"u{n % rooms}_{(n // rooms) % members}",
                                                                        f"成员{(n // rooms) % members}"),
                              text=text)
                  for n, text in enumerate(texts)]
        began = time.perf_counter()
        for event in events:
            await clock.advance_to(event.time)
            await runtime.dispatch(event)
        took = time.perf_counter() - began
    return Run(len(events), took, calls)


# --- NoneBot2 ------------------------------------------------------------------------------


class _NoneBot:
    """A minimal in-process NoneBot2 adapter, bot and message event (no network, no driver)."""

    def __init__(self, log_level: str) -> None:
        import nonebot
        from nonebot.adapters import Adapter, Bot, Event, Message, MessageSegment
        from nonebot.log import default_filter, logger

        logger.remove()
        logger.add(_NullSink(), level=log_level, filter=default_filter, colorize=False)
        nonebot.init(driver="~none", log_level=log_level)

        class Segment(MessageSegment["Msg"]):
            @classmethod
            def get_message_class(cls) -> type[Msg]:
                return Msg

            def __str__(self) -> str:
                return self.data["text"]

            def is_text(self) -> bool:
                return True

        class Msg(Message[Segment]):
            @classmethod
            def get_segment_class(cls) -> type[Segment]:
                return Segment

            @staticmethod
            def _construct(msg: str) -> Any:
                yield Segment("text", {"text": msg})

        class RoomEvent(Event):
            room_id: str
            user_id: str
            message: Msg

            def get_type(self) -> str:
                return "message"

            def get_event_name(self) -> str:
                return "message.group"

            def get_event_description(self) -> str:
                return f"{self.user_id}@{self.room_id}: {self.message}"

            def get_user_id(self) -> str:
                return self.user_id

            def get_session_id(self) -> str:
                return f"{self.room_id}_{self.user_id}"

            def get_message(self) -> Msg:
                return self.message

            def is_tome(self) -> bool:
                return False

        class BenchAdapter(Adapter):
            @classmethod
            def get_name(cls) -> str:
                return "bench"

            async def _call_api(self, bot: Bot, api: str, **data: Any) -> Any:
                return None

        class BenchBot(Bot):
            async def send(self, event: Event, message: Any, **kwargs: Any) -> Any:
                return None

        self.driver = nonebot.get_driver()
        self.adapter = BenchAdapter(self.driver)
        self.bot = BenchBot(self.adapter, "bench-bot")
        self.event_type = RoomEvent
        self.message_type = Msg

    def events(self, texts: Sequence[str], rooms: int, members: int) -> list[Any]:
        return [self.event_type(room_id=f"g{n % rooms}", user_id=f"u{n % rooms}_{(n // rooms) % members}",
                                message=self.message_type(text)) for n, text in enumerate(texts)]


class _NullSink:
    def write(self, message: str) -> None:
        pass


def _clear_nonebot_matchers() -> None:
    from nonebot.matcher import matchers

    matchers.clear()


async def run_nonebot(texts: Sequence[str], *, rooms: int, members: int, setup: str) -> Run:
    from nonebot import on_keyword, on_message, on_regex
    from nonebot.adapters import Event
    from nonebot.message import handle_event

    nb = _NoneBot("SUCCESS" if setup == "default" else "WARNING")
    _clear_nonebot_matchers()
    calls = 0

    async def count() -> None:
        nonlocal calls
        calls += 1

    if setup == "no-matchers":
        pass
    elif setup == "one-matcher":
        compiled = [re.compile(p) for p in PATTERNS]

        async def one(event: Event) -> None:
            nonlocal calls
            text = event.get_plaintext()
            calls += sum(word in text for word in KEYWORDS) + sum(bool(p.search(text)) for p in compiled)

        on_message(priority=1, block=True).handle()(one)
    else:
        for word in KEYWORDS:
            on_keyword({word}, priority=1, block=True).handle()(count)
        for pattern in PATTERNS:
            on_regex(pattern, priority=1, block=True).handle()(count)
    events = nb.events(texts, rooms, members)
    began = time.perf_counter()
    for event in events:
        await handle_event(nb.bot, event)
    took = time.perf_counter() - began
    _clear_nonebot_matchers()
    return Run(len(events), took, calls)


# --- the benchmark --------------------------------------------------------------------------


async def run(events: int = 100_000, *, nonebot_events: int | None = 3_000, rooms: int = 20, members: int = 100,
              progress: Callable[[str], None] = lambda _: None) -> Any:
    from bench._common import Result, Target, rounded

    texts = messages(events)
    nb_texts = texts[: nonebot_events or events]
    result = Result("dispatch")
    qunbot = await run_qunbot(texts, rooms=rooms, members=members)
    progress(f"qunbot: {qunbot.rate:,.0f} events/s")
    expected = reference_calls(texts)
    if qunbot.handler_calls != expected:
        raise AssertionError(f"qunbot made {qunbot.handler_calls} handler calls, the reference {expected}")
    runs: dict[str, Run] = {}
    for setup in ("default", "quiet", "one-matcher", "no-matchers"):
        runs[setup] = await run_nonebot(nb_texts, rooms=rooms, members=members, setup=setup)
        progress(f"NoneBot2 {setup}: {runs[setup].rate:,.0f} events/s")
        expected_nb = 0 if setup == "no-matchers" else reference_calls(nb_texts)
        if runs[setup].handler_calls != expected_nb:
            raise AssertionError(f"NoneBot2 ({setup}) made {runs[setup].handler_calls} handler calls, "
                                 f"the reference {expected_nb}")
    result.figures.update({
        "events": events, "nonebot_events": len(nb_texts), "handlers": len(KEYWORDS) + len(PATTERNS),
        "handler_calls": qunbot.handler_calls, "speakers": rooms * members,
        "qunbot_events_per_s": rounded(qunbot.rate),
        **{f"nonebot_{setup.replace('-', '_')}_events_per_s": rounded(r.rate) for setup, r in runs.items()},
        **{f"ratio_vs_nonebot_{setup.replace('-', '_')}": rounded(qunbot.rate / r.rate) for setup, r in runs.items()},
    })
    result.targets += [
        Target("qunbot events/s (chatter, 20 handlers)", rounded(qunbot.rate), 50_000),
        Target("qunbot / NoneBot2 (quiet, 20 matchers)", rounded(qunbot.rate / runs["quiet"].rate), 10),
    ]
    return result


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(asyncio.run(run(size, progress=print)).as_json())
