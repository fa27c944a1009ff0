"""Group-message tasks: one per owner and post, polled, reminded, cancelled at their deadline.

The outbox hands over one room at a time (`queue`); rows of one owner with the same post, content and
deadline wait `window` seconds for the rest of the fan-out and then become one `add_msg_template` task
with all their groups (at most `limit`, WeCom's 2,000). Each group's outbox row settles on its own: `sent`
or `failed` from `get_groupmsg_send_result`, `cancelled` when the owner did not confirm before the
deadline (an SOP step's grace), so a 早安 confirmed at 15:00 never goes out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, inspect, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot._clock import Clock
from bot.adapters._base import SendError, Settle
from bot.adapters.wecom._client import WecomApiError, WecomClient
from bot.adapters.wecom._models import FIRST_VERSION_TASKS, WecomTask, WecomTaskRoom

log = logging.getLogger("qunbot.wecom")

MAX_REMINDERS = 3
REMINDER_WINDOW = timedelta(hours=24)
_SENT, _NOT_FRIEND, _ALREADY_GOT = 1, 2, 3
_SENDER_SENT = 2
_FAILED_BECAUSE = {_NOT_FRIEND: "客户不是群主的好友", _ALREADY_GOT: "这个群今天已经收到过群发消息"}


def post_of(key: str, room_id: str) -> str:
    """The outbox key without its room: what every room's row of one SOP post shares."""
    return key.replace(f":{room_id}:", ":", 1)


class TaskKeeper:
    """The queued rooms and open tasks of one account, in the database so a restart keeps following them."""

    def __init__(self, account: str, client: WecomClient, engine: Engine, settle: Settle, clock: Clock, *,
                 remind_every: timedelta, window: timedelta = timedelta(seconds=2),
                 limit: Callable[[], int] = lambda: 2000) -> None:
        self.account, self.client, self.engine, self.settle, self.clock = account, client, engine, settle, clock
        self.remind_every, self.window, self.limit = remind_every, window, limit
        self._adopted = False

    # --- rooms in -------------------------------------------------------------------------

    def queue(self, key: str, room_id: str, sender: str, text: str, attachments: list[dict[str, Any]],
              deadline: datetime) -> str:
        """Keep one room's post for its owner's next task; returns the post."""
        post = post_of(key, room_id)
        batch = hashlib.sha1(json.dumps([post, text, attachments, deadline.isoformat()], ensure_ascii=False,
                                        sort_keys=True).encode()).hexdigest()[:24]
        with Session(self.engine) as session:
            session.add(WecomTaskRoom(account=self.account, key=key, room_id=room_id, post=post, sender=sender,
                                      batch=batch, text=text, attachments=attachments, deadline=deadline,
                                      created_at=self.clock.now()))
            session.commit()
        return post

    def known(self, key: str) -> bool:
        with Session(self.engine) as session:
            return session.exec(select(WecomTaskRoom.id).where(WecomTaskRoom.account == self.account,
                                                               WecomTaskRoom.key == key)).first() is not None

    def next_due(self) -> datetime | None:
        """When something is due: a queued batch's window ends, or a waiting task's deadline comes.

        A batch WeCom refused and a deadline already past (its cancel failed) wait for the regular poll,
        so a lasting error is not retried in a tight loop."""
        with Session(self.engine) as session:
            deadline = session.exec(select(func.min(WecomTask.deadline)).where(
                WecomTask.account == self.account, WecomTask.status == "waiting",
                col(WecomTask.deadline) > self.clock.now())).one()
            newest = session.exec(select(func.max(WecomTaskRoom.created_at)).where(
                WecomTaskRoom.account == self.account, WecomTaskRoom.status == "queued", WecomTaskRoom.detail == "")
                .group_by(col(WecomTaskRoom.sender), col(WecomTaskRoom.batch))).all()
        times = [t.astimezone(self.clock.tz) for t in (deadline, *(n + self.window for n in newest)) if t]
        return min(times, default=None)

    # --- tasks out ----------------------------------------------------------------------------

    async def flush(self) -> int:
        """Make tasks of the queued rooms whose window is over (and of full batches at once); how many."""
        now, limit, made = self.clock.now(), max(1, self.limit()), 0
        with Session(self.engine) as session:
            batches = session.exec(
                select(WecomTaskRoom.sender, WecomTaskRoom.batch, func.count(), func.max(WecomTaskRoom.created_at))
                .where(WecomTaskRoom.account == self.account, WecomTaskRoom.status == "queued")
                .group_by(col(WecomTaskRoom.sender), col(WecomTaskRoom.batch))).all()
        for sender, batch, count, newest in batches:
            ripe = now - newest.astimezone(now.tzinfo) >= self.window
            if not ripe and count < limit:
                continue  # more rooms of this post may still come
            with Session(self.engine, expire_on_commit=False) as session:
                rows = session.exec(select(WecomTaskRoom).where(
                    WecomTaskRoom.account == self.account, WecomTaskRoom.status == "queued",
                    WecomTaskRoom.sender == sender, WecomTaskRoom.batch == batch).order_by(col(WecomTaskRoom.id))
                ).all()
            chunks = [rows[i:i + limit] for i in range(0, len(rows), limit)]
            for chunk in chunks if ripe else [c for c in chunks if len(c) == limit]:
                made += await self._create(chunk, now)
        return made

    async def _create(self, rooms: Sequence[WecomTaskRoom], now: datetime) -> int:
        first = rooms[0]
        deadline = first.deadline.astimezone(now.tzinfo)
        if now >= deadline:  # e.g. the bot was down past the grace: too late to ask the owner
            why = first.detail or "程序没有运行"
            detail = f"到 {deadline:%m-%d %H:%M:%S} 还没能建成群发任务，过了宽限时间就不再发（{why}）"
            self._end(rooms, "skipped", detail, now)
            log.warning("account %s: %s to %d group(s) of %s: %s", self.account, first.post, len(rooms),
                        first.sender, detail)
            return 0
        try:
            msgid, refused = await self.client.add_group_task(first.sender, [r.room_id for r in rooms], first.text,
                                                              first.attachments)
        except SendError as err:  # rate limit, outage, errcode: the rooms stay queued for the next round
            ids = [r.id for r in rooms]
            with Session(self.engine) as session:
                session.execute(update(WecomTaskRoom).where(col(WecomTaskRoom.id).in_(ids)).values(detail=str(err)))
                session.commit()
            log.warning("account %s: could not make the task for %s (%d group(s) of %s): %s; trying again",
                        self.account, first.post, len(rooms), first.sender, err)
            return 0
        taken = [r for r in rooms if r.room_id not in refused]
        with Session(self.engine) as session:
            session.add(WecomTask(account=self.account, msgid=msgid, post=first.post, sender=first.sender,
                                  groups=len(taken), created_at=now, deadline=deadline,
                                  status="waiting" if taken else "done", settled_at=None if taken else now))
            session.execute(update(WecomTaskRoom).where(col(WecomTaskRoom.id).in_([r.id for r in rooms]))
                            .values(msgid=msgid, status="waiting", detail=""))
            session.commit()
        if refused:
            self._end([r for r in rooms if r.room_id in refused], "failed",
                      f"企业微信不接受群 {first.sender} 名下的这个群（add_msg_template 的 fail_list）", now)
        log.info("account %s: %s is task %s for %s with %d group(s)", self.account, first.post, msgid,
                 first.sender, len(taken))
        return 1

    def adopt_first_version(self) -> int:
        """Follow the tasks the first WeCom version made (one per room, table `wecom_task`) still waiting."""
        old = FIRST_VERSION_TASKS
        if not inspect(self.engine).has_table(old.name):
            return 0
        with Session(self.engine) as session:
            waiting = session.execute(select(old).where(old.c.account == self.account, old.c.status == "waiting")
                                      ).mappings().all()
            for row in waiting:
                session.add(WecomTask(account=self.account, msgid=row["msgid"], post=row["post"], sender=row["sender"],
                                      groups=1, reminders=list(row["reminders"] or []), created_at=row["created_at"],
                                      deadline=row["deadline"]))
                session.add(WecomTaskRoom(account=self.account, key=row["key"], room_id=row["room_id"],
                                          post=row["post"], sender=row["sender"], batch="", text="",
                                          deadline=row["deadline"], created_at=row["created_at"],
                                          msgid=row["msgid"], status="waiting"))
                session.execute(update(old).where(old.c.id == row["id"]).values(status="adopted"))
            session.commit()
        if waiting:
            log.info("account %s: following %d task(s) made before the upgrade", self.account, len(waiting))
        return len(waiting)

    async def poll(self) -> None:
        """Make the tasks that are due, then look at every open task once; one failing call waits a round."""
        if not self._adopted:
            self.adopt_first_version()
            self._adopted = True
        await self.flush()
        with Session(self.engine, expire_on_commit=False) as session:
            tasks = session.exec(select(WecomTask).where(WecomTask.account == self.account,
                                                         WecomTask.status == "waiting")
                                 .order_by(col(WecomTask.id))).all()
        for task in tasks:
            try:
                await self._poll_one(task)
            except WecomApiError as err:
                log.warning("account %s: task %s (%s): %s; trying again next round", self.account, task.msgid,
                            task.post, err)
            except Exception as err:
                log.warning("account %s: task %s: %s", self.account, task.msgid, err)

    async def _poll_one(self, task: WecomTask) -> None:
        now = self.clock.now()
        senders = await self.client.task_senders(task.msgid)
        if any(s.get("userid") == task.sender and int(s.get("status", 0)) == _SENDER_SENT for s in senders):
            await self._delivered(task, now)
            return
        if now >= task.deadline.astimezone(now.tzinfo):
            await self.client.cancel(task.msgid)
            by = task.deadline.astimezone(now.tzinfo).strftime("%m-%d %H:%M:%S")
            detail = f"群主 {task.sender} 在 {by} 前没有确认这条群发任务，已取消（过了宽限时间就不再发）"
            cancelled = self._end(self._open_rooms(task), "cancelled", detail, now)
            self._update(task, status="done", cancelled=task.cancelled + cancelled, settled_at=now, detail=detail)
            log.warning("account %s: task %s (%s, %d group(s)) %s", self.account, task.msgid, task.post, cancelled,
                        detail)
            return
        recent = [datetime.fromisoformat(at) for at in task.reminders]
        recent = [at for at in recent if now - at < REMINDER_WINDOW]
        last = max(recent, default=task.created_at.astimezone(now.tzinfo))
        if len(recent) < MAX_REMINDERS and now - last >= self.remind_every:
            await self.client.remind(task.msgid)
            self._update(task, reminders=[*task.reminders, now.isoformat()])
            log.info("account %s: reminded %s to confirm task %s (%d of %d in 24 h)", self.account, task.sender,
                     task.msgid, len(recent) + 1, MAX_REMINDERS)

    async def _delivered(self, task: WecomTask, now: datetime) -> None:
        """The owner confirmed: settle each group WeCom has a result for; the task ends when every group has."""
        if not task.confirmed:
            with Session(self.engine) as session:
                session.execute(update(WecomTaskRoom).where(WecomTaskRoom.account == self.account,
                                                            WecomTaskRoom.msgid == task.msgid,
                                                            WecomTaskRoom.status == "waiting").values(confirmed=True))
                session.commit()
            self._update(task, confirmed=task.groups)
        results = {str(r.get("chat_id")): int(r.get("status", 0))
                   for r in await self.client.send_results(task.msgid, task.sender)}
        rooms = self._open_rooms(task)
        got = [r for r in rooms if results.get(r.room_id) == _SENT]
        lost = [r for r in rooms if results.get(r.room_id) in _FAILED_BECAUSE]
        self._end(got, "sent", "", now)
        for code, why in _FAILED_BECAUSE.items():
            self._end([r for r in lost if results[r.room_id] == code], "failed",
                      f"群主确认了，但企业微信说这个群没有收到：{why}（status {code}）", now)
        done = len(got) + len(lost) == len(rooms)
        self._update(task, sent=task.sent + len(got), failed=task.failed + len(lost),
                     **({"status": "done", "settled_at": now} if done else {}))
        if got or lost:
            log.info("account %s: task %s confirmed by %s: %d group(s) got it, %d failed%s", self.account,
                     task.msgid, task.sender, len(got), len(lost), "" if done else ", the rest still on the way")

    def _open_rooms(self, task: WecomTask) -> list[WecomTaskRoom]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.exec(select(WecomTaskRoom).where(
                WecomTaskRoom.account == self.account, WecomTaskRoom.msgid == task.msgid,
                WecomTaskRoom.status == "waiting").order_by(col(WecomTaskRoom.id))).all())

    def _end(self, rooms: Sequence[WecomTaskRoom], status: str, detail: str, now: datetime) -> int:
        """Settle each room's outbox row, then record it here: a crash between the two settles again (a no-op)."""
        if not rooms:
            return 0
        for room in rooms:
            self.settle(room.key, status, detail or None)
        with Session(self.engine) as session:
            session.execute(update(WecomTaskRoom).where(col(WecomTaskRoom.id).in_([r.id for r in rooms]))
                            .values(status=status, detail=detail, settled_at=now))
            session.commit()
        return len(rooms)

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
