"""Group-message tasks after `add_msg_template`: poll them, remind the owner, cancel them at their deadline.

A task settles its outbox row: `sent` when the owner confirmed and WeCom delivered it, `failed` when
every group failed, `cancelled` when nobody confirmed it before the deadline (an SOP step's grace), so a
早安 confirmed at 15:00 never goes out.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot._clock import Clock
from bot.adapters._base import Settle
from bot.adapters.wecom._client import WecomApiError, WecomClient
from bot.adapters.wecom._models import WecomTask

log = logging.getLogger("qunbot.wecom")

MAX_REMINDERS = 3
REMINDER_WINDOW = timedelta(hours=24)
_SENT, _NOT_FRIEND, _ALREADY_GOT = 1, 2, 3
_SENDER_SENT = 2


class TaskKeeper:
    """The open tasks of one account, in the database so a restart keeps following them."""

    def __init__(self, account: str, client: WecomClient, engine: Engine, settle: Settle, clock: Clock, *,
                 remind_every: timedelta) -> None:
        self.account, self.client, self.engine, self.settle, self.clock = account, client, engine, settle, clock
        self.remind_every = remind_every

    def record(self, key: str, room_id: str, msgid: str, sender: str, deadline: datetime) -> None:
        with Session(self.engine) as session:
            session.add(WecomTask(account=self.account, key=key, post=key.replace(f":{room_id}:", ":", 1),
                                  room_id=room_id, msgid=msgid, sender=sender, created_at=self.clock.now(),
                                  deadline=deadline))
            session.commit()

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of a task still waiting: the poller looks then, not a poll interval later."""
        with Session(self.engine) as session:
            return session.exec(select(func.min(WecomTask.deadline)).where(
                WecomTask.account == self.account, WecomTask.status == "waiting")).one()

    def known(self, key: str) -> bool:
        with Session(self.engine) as session:
            return session.exec(select(WecomTask.id).where(WecomTask.account == self.account,
                                                           WecomTask.key == key)).first() is not None

    async def poll(self) -> None:
        """Look at every open task once; one failing call leaves that task for the next round."""
        with Session(self.engine, expire_on_commit=False) as session:
            tasks = session.exec(select(WecomTask).where(WecomTask.account == self.account,
                                                         WecomTask.status == "waiting")
                                 .order_by(col(WecomTask.id))).all()
        for task in tasks:
            try:
                await self._poll_one(task)
            except WecomApiError as err:
                log.warning("account %s: task %s (%s): %s; trying again next round", self.account, task.msgid,
                            task.key, err)
            except Exception as err:
                log.warning("account %s: task %s: %s", self.account, task.msgid, err)

    async def _poll_one(self, task: WecomTask) -> None:
        now = self.clock.now()
        senders = await self.client.task_senders(task.msgid)
        if any(s.get("userid") == task.sender and int(s.get("status", 0)) == _SENDER_SENT for s in senders):
            results = await self.client.send_results(task.msgid, task.sender)
            mine = [r for r in results if r.get("chat_id") == task.room_id] or results
            sent = sum(1 for r in mine if int(r.get("status", 0)) == _SENT)
            failed = sum(1 for r in mine if int(r.get("status", 0)) in (_NOT_FRIEND, _ALREADY_GOT))
            if mine and sent + failed < len(mine):
                self._update(task, confirmed=1)
                return  # confirmed; WeCom is still delivering
            status = "sent" if sent else "failed"
            detail = "" if sent else "WeCom reports the group did not get it (status 2/3)"
            self._update(task, status=status, confirmed=1, sent=sent, failed=failed, settled_at=now, detail=detail)
            self.settle(task.key, status, detail or None)
            log.info("account %s: task %s confirmed by %s: %d group(s) got it, %d failed", self.account,
                     task.msgid, task.sender, sent, failed)
            return
        if now >= task.deadline.astimezone(now.tzinfo):
            await self.client.cancel(task.msgid)
            by = task.deadline.astimezone(now.tzinfo).strftime("%m-%d %H:%M:%S")
            detail = f"群主 {task.sender} 在 {by} 前没有确认这条群发任务，已取消（过了宽限时间就不再发）"
            self._update(task, status="cancelled", cancelled=1, settled_at=now, detail=detail)
            self.settle(task.key, "cancelled", detail)
            log.warning("account %s: task %s (%s) %s", self.account, task.msgid, task.key, detail)
            return
        recent = [datetime.fromisoformat(at) for at in task.reminders]
        recent = [at for at in recent if now - at < REMINDER_WINDOW]
        last = max(recent, default=task.created_at.astimezone(now.tzinfo))
        if len(recent) < MAX_REMINDERS and now - last >= self.remind_every:
            await self.client.remind(task.msgid)
            self._update(task, reminders=[*task.reminders, now.isoformat()])
            log.info("account %s: reminded %s to confirm task %s (%d of %d in 24 h)", self.account, task.sender,
                     task.msgid, len(recent) + 1, MAX_REMINDERS)

    def _update(self, task: WecomTask, **values: object) -> None:
        with Session(self.engine) as session:
            row = session.get(WecomTask, task.id)
            if row is None:
                return
            for name, value in values.items():
                setattr(row, name, value)
                setattr(task, name, value)
            session.add(row)
            session.commit()
