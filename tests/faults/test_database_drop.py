"""The database cuts the bot's connections (as a PostgreSQL restart does) in the worst places:
inside a handler's transaction, and while a message is being handed to WeChat. Nothing is lost or doubled."""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from bot import Context, Plugin
from bot._models import OutboxMessage
from bot.testing import BotHarness


def cut(pid: int, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_handler_whose_transaction_is_cut_runs_again_and_replies_once(project, pg_url, caplog):
    caplog.set_level(logging.WARNING)
    runs: list[int] = []
    plugin = Plugin("fragile")

    @plugin.on_fullmatch("签到").handle
    async def sign_in(ctx: Context) -> None:
        runs.append(1)
        await ctx.reply("签到成功")
        if len(runs) == 1:  # the server restarts while this transaction is open
            cut(ctx.db.connection().execute(text("SELECT pg_backend_pid()")).scalar_one(), pg_url)

    async with BotHarness(project, plugins=[plugin], db_url=pg_url) as bot:
        bot.room("g1", members={"u1": "Alice"})
        await bot.say("g1", "u1", "签到")
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = session.exec(select(OutboxMessage)).all()
    assert len(runs) == 2
    assert texts == ["@Alice 签到成功"]
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)]
    assert any("connection dropped" in r.getMessage() for r in caplog.records)


async def test_every_connection_cut_while_a_message_is_sent_records_it_once(project, pg_url):
    plugin = Plugin("bc")

    @plugin.on_fullmatch("发").handle
    async def send(ctx: Context) -> None:
        for n in range(5):
            await ctx.say(f"第{n}条", key=f"bc:{n}")

    async with BotHarness(project, plugins=[plugin], db_url=pg_url) as bot:
        bot.room("g1", members={"u1": "Alice"})
        adapter = bot.sim.adapter
        real_send = adapter.send

        async def send_while_the_database_restarts(message):
            await real_send(message)
            if message.text == "第2条":
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")

        adapter.send = send_while_the_database_restarts
        bot.runtime.outbox(adapter.account)._send = send_while_the_database_restarts
        await bot.say("g1", "u1", "发")
        await bot.settle()
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.key: r.status for r in session.exec(select(OutboxMessage))}
    assert texts == [f"第{n}条" for n in range(5)]
    assert rows == {f"bc:{n}": "sent" for n in range(5)}


class Outage:
    """Makes every statement fail while `down`, as a database that is restarting does."""

    def __init__(self, engine) -> None:
        self.down = False
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *args) -> None:
        if self.down:
            raise OperationalError("(statement)", {}, ConnectionError("the database is restarting"))


async def test_a_timer_and_queued_sends_due_during_an_outage_happen_once_it_is_back(project, caplog):
    caplog.set_level(logging.WARNING)
    plugin = Plugin("later")

    @plugin.on_fullmatch("稍后提醒").handle
    async def ask(ctx: Context) -> None:
        await ctx.reply("好的")
        ctx.schedule("ring", delay=timedelta(minutes=5), key="ring")

    @plugin.timer("ring")
    async def ring(ctx: Context) -> None:
        await ctx.say("时间到")

    async with BotHarness(project, plugins=[plugin], pacing={"min_interval": 60, "jitter": 0,
                                                              "room_interval": 0}) as bot:
        bot.room("g1", members={"u1": "Alice"})
        outage = Outage(bot.runtime.engine)
        await bot.say("g1", "u1", "稍后提醒", drain=False)
        outage.down = True
        await bot.advance("10m")  # the reply's send and the timer both come due while the database is away
        assert bot.pop() == []
        outage.down = False
        await bot.advance("2m")
        await bot.settle()
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.text: r.status for r in session.exec(select(OutboxMessage))}
    assert texts == ["@Alice 好的", "时间到"]
    assert rows == {"@Alice 好的": "sent", "时间到": "sent"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("database unavailable; trying again" in m for m in messages)
    assert any("database error" in m and "retrying" in m for m in messages)


def _one_post() -> Plugin:
    """发 -> one post, keyed `morning`."""
    plugin = Plugin("morning")

    @plugin.on_fullmatch("发").handle
    async def send(ctx: Context) -> None:
        await ctx.say("早安", key="morning")

    return plugin


async def test_a_cut_right_after_a_message_is_claimed_leaves_it_to_be_sent_not_stuck(project):
    """The database goes away between the claim (`sending`) and the hand-over to WeChat: the message
    is not sent yet, so it must go back to the queue and go out once the database is back, not sit
    `sending` until a restart (which would then log it `uncertain` and never send it)."""
    async with BotHarness(project, plugins=[_one_post()]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        engine = bot.runtime.engine
        claimed = {"seen": False, "failed": False}

        def fail_once_after_the_claim(conn, cursor, statement, parameters, context, executemany) -> None:
            if claimed["seen"] and not claimed["failed"]:
                claimed["failed"] = True
                raise OperationalError("(statement)", {}, ConnectionError("the database is restarting"))
            if statement.lstrip().upper().startswith("UPDATE CORE_OUTBOX") and "sending" in repr(parameters):
                claimed["seen"] = True

        event.listen(engine, "after_cursor_execute", fail_once_after_the_claim)
        await bot.say("g1", "u1", "发")
        await bot.advance("10s")
        await bot.settle()
        event.remove(engine, "after_cursor_execute", fail_once_after_the_claim)
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.key: r.status for r in session.exec(select(OutboxMessage))}
    assert claimed["failed"], "the fault was never injected; nothing was tested"
    assert texts == ["早安"]
    assert rows == {"morning": "sent"}


async def test_a_claim_whose_commit_answer_is_lost_goes_back_to_the_queue_and_is_sent_once(project):
    """The claim commits, but the answer is lost with the connection: the outbox cannot know, so it puts
    the row back to the queue (only if it is still its own `sending` claim) and sends it once."""
    async with BotHarness(project, plugins=[_one_post()]) as bot:
        bot.room("g1", members={"u1": "Alice"})
        dialect = bot.runtime.engine.dialect
        real_commit = dialect.do_commit
        state = {"claim": False, "lost": False}

        def note_the_claim(conn, cursor, statement, parameters, context, executemany) -> None:
            if statement.lstrip().upper().startswith("UPDATE CORE_OUTBOX") and "sending" in repr(parameters):
                state["claim"] = True

        def commit_then_lose_the_answer(dbapi_connection) -> None:
            real_commit(dbapi_connection)
            if state["claim"] and not state["lost"]:
                state["lost"] = True
                raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

        event.listen(bot.runtime.engine, "after_cursor_execute", note_the_claim)
        dialect.do_commit = commit_then_lose_the_answer
        try:
            await bot.say("g1", "u1", "发")
            await bot.advance("10s")
            await bot.settle()
        finally:
            dialect.do_commit = real_commit
            event.remove(bot.runtime.engine, "after_cursor_execute", note_the_claim)
        texts = [m.text for m in bot.pop()]
        with bot.db() as session:
            rows = {r.key: (r.status, r.attempts) for r in session.exec(select(OutboxMessage))}
    assert state["lost"], "the fault was never injected; nothing was tested"
    assert texts == ["早安"]
    assert rows == {"morning": ("sent", 1)}
