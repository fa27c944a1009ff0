"""The one typed object a handler receives: the event, who and where, and what it may do.

Replies go into the outbox inside the handler's own database transaction, so a
handler that fails sends nothing and changes nothing, and one that succeeds
commits its state and its messages together.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from bot._entropy import secret_hex
from bot._events import DirectMessage, Event, MemberRef, TimerFired
from bot._group import current_group
from bot._models import Membership
from bot._outbox import MergeInto
from bot._templates import TemplateError
from bot.adapters._base import Capabilities

if TYPE_CHECKING:
    from bot._clock import Clock
    from bot._config import ProjectConfig
    from bot._members import Members
    from bot._outbox import Outbox
    from bot._plugin import Plugin
    from bot._tasks import Tasks
    from bot._templates import Renderer
    from bot.adapters._base import Adapter, Capabilities


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member as templates and handlers see them; `display` is the group nickname if set."""

    id: str
    name: str
    alias: str | None = None

    @property
    def display(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True, slots=True)
class MembershipInfo:
    """A member's life in one room as the runtime recorded it (read-only for plugins)."""

    room_id: str
    member_id: str
    joined_at: datetime | None
    """None if they were in the room before the bot looked."""
    inviter_id: str | None
    """Who invited them at their latest join, where WeChat tells."""
    left_at: datetime | None
    alias: str | None
    is_admin: bool

    @property
    def in_room(self) -> bool:
        return self.left_at is None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    topic: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Merge:
    """Let a reply merge with others of its kind while they wait to be sent: 100 签到 at 08:00 become
    five messages of 20 @-mentions, not a hundred.

    `key` names the kind ("points.signin"); `template` is the merged form the admin can edit, rendered
    with `items` (one per reply: `item.member` plus `values`) and `count`; `values` must be JSON-able.
    A reply on its own keeps its usual template. The merged form is rendered once, as the message goes out.
    """

    key: str
    template: str
    values: Mapping[str, Any] = field(default_factory=dict)


class ContextHost(Protocol):
    """What a `Context` reaches in the runtime (through `self._rt`); `Runtime` is one.

    Typed this narrowly so this module need not import `bot._runtime`, which imports it.
    """

    clock: Clock
    config: ProjectConfig
    members: Members
    adapters: dict[str, Adapter]
    plugins: dict[str, Plugin]
    renderer: Renderer
    tasks: Tasks
    project: Path
    seed: int | None

    def new_session(self) -> Session: ...
    def outbox(self, account: str) -> Outbox: ...
    def plugin_config(self, plugin_name: str, room_id: str | None) -> Any: ...
    def plugin_enabled(self, plugin_name: str, room_id: str) -> bool: ...
    def service(self, plugin_name: str) -> Any: ...
    def run_in_background(self, work: Awaitable[Mapping[str, Any] | None], *, account: str, plugin_name: str,
                          then: str, room_id: str | None, key: str) -> None: ...


class Context:
    """What a handler, timer or action gets. Build nothing here yourself: the runtime does."""

    def __init__(
        self,
        runtime: ContextHost,
        plugin: Plugin,
        event: Event,
        *,
        room_id: str | None = None,
        member_id: str | None = None,
        text: str = "",
        args: str = "",
        match: re.Match[str] | None = None,
    ) -> None:
        self._rt = runtime
        self.plugin = plugin
        self.event = event
        self.account = event.account
        self.room_id = room_id
        self.member_id = member_id
        self.text = text
        """The message text with the bot's @-mention and surrounding spaces removed."""
        self.args = args
        """For commands: what follows the command word, stripped."""
        self.match = match
        """For regex matchers: the `re.Match`."""
        self.state: dict[str, Any] = {}
        """What a matcher's rule found, for its handlers (NoneBot2's state): the same context runs both."""
        self.log = logging.getLogger(f"qunbot.plugin.{plugin.name}")
        self._session: Session | None = None
        self._savepoint: SessionTransaction | None = None
        """In a group commit (`bot/_group.py`): this handler run's savepoint in the shared transaction."""
        self._sends = 0
        self._armed: list[int] = []
        self._waited = False
        """Whether the last handler run on this context had to wait (see `Dispatcher.observed`)."""

    # --- time -----------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The bot clock's time in the configured time zone (virtual in simulations)."""
        return self._rt.clock.now()

    @property
    def today(self) -> date:
        """The local calendar day (configured time zone) — what "once a day" means."""
        return self.now.date()

    # --- who and where ------------------------------------------------------------

    @property
    def room(self) -> RoomInfo | None:
        return None if self.room_id is None else self._rt.members.room_info(self.room_id)

    @property
    def member(self) -> MemberInfo | None:
        if self.member_id is None:
            return None
        return self._rt.members.member_info(self.member_id, self.room_id)

    @property
    def is_direct(self) -> bool:
        return isinstance(self.event, DirectMessage)

    @property
    def task(self) -> TimerFired | None:
        """The durable timer being run, in a `@plugin.timer` handler."""
        return self.event if isinstance(self.event, TimerFired) else None

    @property
    def max_mentions(self) -> int:
        """How many members one message of this account may @-mention (`pacing.max_mentions`)."""
        return self._rt.config.pacing_for(self.account).max_mentions

    @property
    def bot_name(self) -> str:
        return self._rt.config.bot.name

    def is_operator(self, member_id: str | None = None) -> bool:
        return (member_id or self.member_id) in self._rt.config.bot.operators

    def is_room_admin(self, member_id: str | None = None, room_id: str | None = None) -> bool:
        room = room_id or self.room_id
        who = member_id or self.member_id
        return room is not None and who is not None and self._rt.members.is_admin(room, who)

    def room_admins(self, room_id: str | None = None) -> list[str]:
        """Member ids of the room's admins (the owner included), e.g. to tell them what the bot cannot do."""
        room = room_id or self.room_id
        return [] if room is None else self._rt.members.admins(room)

    @property
    def capabilities(self) -> Capabilities:
        """What this account's transport can do: ask this, never which adapter it is."""
        return self._rt.adapters[self.account].capabilities

    def member_info(self, member_id: str, room_id: str | None = None) -> MemberInfo:
        return self._rt.members.member_info(member_id, room_id or self.room_id)

    def joined_at(self, member_id: str | None = None, room_id: str | None = None) -> datetime | None:
        """When the member joined the room, as the bot saw it; None if they were there before it looked."""
        room, who = room_id or self.room_id, member_id or self.member_id
        if room is None or who is None:
            return None
        membership = self.db.get(Membership, (room, who))
        return None if membership is None else membership.joined_at

    def membership(self, member_id: str | None = None, room_id: str | None = None) -> MembershipInfo | None:
        """When the member joined, who invited them, whether they left; None if the bot never saw them there."""
        room, who = room_id or self.room_id, member_id or self.member_id
        row = None if room is None or who is None else self.db.get(Membership, (room, who))
        if row is None:
            return None
        return MembershipInfo(row.room_id, row.member_id, row.joined_at, row.inviter_id, row.left_at, row.alias,
                              row.is_admin)

    async def bot_member(self) -> MemberRef | None:
        """The bot's own account in this context's account (to leave itself out of a join, say)."""
        return await self._rt.adapters[self.account].self_member()

    async def mentioned(self) -> list[str]:
        """Members @-mentioned in this message, in order, the bot left out (whom an admin command is about)."""
        mentions = getattr(self.event, "mentions", ())
        if not mentions:
            return []
        me = await self.bot_member()
        return [m for m in mentions if me is None or m != me.id]

    # --- config, storage, other plugins ------------------------------------------------

    @property
    def config(self) -> Any:
        """This plugin's validated config for this room (`[plugins.x]` merged with room overrides)."""
        return self._rt.plugin_config(self.plugin.name, self.room_id)

    def config_of(self, plugin_name: str) -> Any:
        """Another enabled plugin's validated config for this room (e.g. the guard's rules, for the FAQ)."""
        return self._rt.plugin_config(plugin_name, self.room_id)

    @property
    def project(self) -> Path:
        """The bot project folder, for plugin data files such as `data/quiz/*.yaml`."""
        return self._rt.project

    @property
    def db(self) -> Session:
        """A session for this handler run, committed when the handler returns normally."""
        if self._session is None:
            group = current_group()
            self._session = self._rt.new_session() if group is None else group.session
        return self._session

    @property
    def plugins(self) -> list[Plugin]:
        """The plugins enabled where this event happened (all enabled ones outside a room), in load order."""
        return [p for name, p in self._rt.plugins.items()
                if self.room_id is None or self._rt.plugin_enabled(name, self.room_id)]

    def service(self, plugin_name: str) -> Any:
        """The public API object another plugin offers (`plugin.service`); LookupError if that plugin is not
        enabled, or is switched off in this context's room.

        A service with a `bind(ctx)` method is handed out bound to this context, so it can act in the
        caller's transaction (the points service queues a level-up message that commits with the grant).
        """
        service = self._rt.service(plugin_name)
        if self.room_id is not None and not self._rt.plugin_enabled(plugin_name, self.room_id):
            raise LookupError(f"plugin {plugin_name!r} is switched off in room {self.room_id}")
        bind = getattr(service, "bind", None)
        return bind(self) if callable(bind) else service

    # --- templates and sending ------------------------------------------------

    def render(self, template: str, /, **variables: Any) -> Any:
        """Render a template from `scripts_templates/` with the standard variables added."""
        base: dict[str, Any] = {"member": self.member, "room": self.room, "now": self.now, "config": self.config}
        base.update(variables)
        return self._rt.renderer.render(template, **base)

    async def reply(self, text: str | None = None, *, template: str | None = None, mention: bool = True,
                    file: str | None = None, merge: Merge | None = None, **variables: Any) -> bool:
        """Answer where the event came from: in the room with an @ of the sender, or privately.

        With `merge`, a room reply joins others of its kind still queued in the room (see `Merge`).
        False if the account cannot send it (a file on an account that cannot send files): see `say`."""
        if self.room_id is None and self.member_id is None:
            raise RuntimeError("this context has no room or member to reply to")
        mentions = (self.member_id,) if mention and self.room_id and self.member_id else ()
        return self.queue(text, template=template, mentions=mentions, file=file,
                          merge=merge if mentions and file is None else None, **variables)

    async def say(self, text: str | None = None, *, template: str | None = None, room: str | None = None,
                  to: str | None = None, mentions: tuple[str, ...] | list[str] = (), file: str | None = None,
                  key: str | None = None, expires_at: datetime | None = None, merge: Merge | None = None,
                  **variables: Any) -> bool:
        """Queue a message to a room (default: this room) or a member (`to`), paced by the outbox.

        Give `text` or a `template`; @-names for `mentions` missing from the text are prepended.
        False if this account cannot send it at all (the reason is logged and kept with the message).
        With `merge` and a mention, it may join others of its kind still queued in the room (see `Merge`).
        """
        return self.queue(text, template=template, room=room, to=to, mentions=mentions, file=file, key=key,
                          expires_at=expires_at, merge=merge, **variables)

    def queue(self, text: str | None = None, *, template: str | None = None, room: str | None = None,
              to: str | None = None, mentions: tuple[str, ...] | list[str] = (), file: str | None = None,
              key: str | None = None, expires_at: datetime | None = None, merge: Merge | None = None,
              **variables: Any) -> bool:
        """`say` for synchronous code (a service called from a handler): the message commits with the handler."""
        if (text is None) == (template is None):
            raise ValueError("say() takes exactly one of text or template")
        if room is None and to is None:
            room = self.room_id
            if room is None:
                to = self.member_id
        outbox = self._rt.outbox(self.account)
        merge_into = self._merge_into(merge, room, tuple(mentions)) if merge is not None and room else None
        merge_key = key or f"{self._key_base()}:{self._sends + 1}"
        if merge_into is not None and room is not None and file is None:
            if outbox.merge(self.db, key=merge_key, room_id=room, merge=merge_into):
                self._sends += 1
                return True  # it joined a queued message: its own text is never needed
            merge_into = self._merged_form_renders(merge_into, room)
        found: tuple[str, ...] = ()
        if template is not None:
            rendered = self.render(template, **variables)
            text, found = rendered.text, rendered.mentions
        all_mentions = tuple(dict.fromkeys([*mentions, *found])) if room else ()
        body = self._rt.members.with_mentions(text or "", all_mentions, room)
        self._sends += 1
        refused = outbox.enqueue(
            self.db,
            key=key or f"{self._key_base()}:{self._sends}",
            text=body,
            room_id=room,
            to=None if room else to,
            mentions=all_mentions,
            file=file,
            source=self.plugin.name,
            expires_at=expires_at,
            merge=merge_into,
        )
        return refused is None

    def _merge_into(self, merge: Merge, room: str, mentions: tuple[str, ...]) -> MergeInto | None:
        """The outbox's view of a mergeable reply: the member it answers, its values, the merged form."""
        if not mentions:
            return None
        who = self.member_id if self.member_id in mentions else mentions[0]
        info = self._rt.members.member_info(who, room)
        part = {"member": {"id": info.id, "name": info.name, "display": info.display}, **merge.values}
        return MergeInto(merge.key, part, merge.template, info.id)

    def _merged_form_renders(self, merge: MergeInto, room: str) -> MergeInto | None:
        """`merge` if its merged form renders (tried once, as a message of its kind begins); None sends this
        reply on its own, in its own template, and so every reply after it while the template stays broken."""
        try:
            render_merged(self._rt, merge.template, self.plugin.name, room, [merge.part])
        except Exception as err:
            self.log.error("could not render %s, so the reply goes on its own: %s", merge.template, err)
            return None
        return merge

    async def remove_member(self, member_id: str, *, room: str | None = None, key: str | None = None) -> bool:
        """Remove a member from a room (default: this room), paced like a message.

        False if this account cannot remove members (WeCom's official API): nothing is done, and it says so."""
        return await self._room_action("remove_member", room, key, member_id=member_id)

    async def set_topic(self, topic: str, *, room: str | None = None, key: str | None = None) -> bool:
        """Change a room's name (topic), paced like a message. False if this account cannot."""
        return await self._room_action("set_topic", room, key, text=topic)

    async def _room_action(self, action: str, room: str | None, key: str | None, *, text: str = "",
                           member_id: str | None = None) -> bool:
        room = room or self.room_id
        if room is None:
            raise ValueError(f"{action} needs a room")
        self._sends += 1
        refused = self._rt.outbox(self.account).enqueue(
            self.db, key=key or f"{self._key_base()}:{self._sends}", text=text, room_id=room, action=action,
            member_id=member_id, source=self.plugin.name)
        return refused is None

    def set_welcome_template(self, text: str) -> None:
        """Make `text` the account's platform-side welcome (where `capabilities.welcome_by_template`).

        WeCom: the corp's 入群欢迎语 template, `%NICKNAME%` standing for the newcomer. Queued through the
        outbox once per text (a changed text edits the template).
        """
        digest = hashlib.sha1(text.encode()).hexdigest()[:16]
        self._rt.outbox(self.account).enqueue(self.db, key=f"welcome_template:{digest}", text=text, to=self.account,
                                              action="welcome_template", source=self.plugin.name)

    def _key_base(self) -> str:
        return f"{self.event.id}:{self.plugin.name}"

    def secret_hex(self, label: str) -> str:
        """A secret of 32 random bytes in hex: OS randomness under `qunbot run`; in a simulation (which has a
        scenario `seed`) derived from that seed and `label`, so a rerun repeats it. Labels must differ per value."""
        return secret_hex(self._rt.seed, label)

    def in_background(self, work: Awaitable[Mapping[str, Any] | None], *, then: str, key: str | None = None) -> None:
        """Run slow outside work (an HTTP call) off the event path, so other messages are not kept waiting.

        When `work` finishes, its result (a dict; None for nothing more) becomes the params of this plugin's
        `@plugin.action(then)`, run in this room. `work` must not use this context's `db` (it is closed by then).
        """
        if then not in self.plugin.actions:
            raise ValueError(f"plugin {self.plugin.name} has no action named {then!r}")
        self._rt.run_in_background(work, account=self.account, plugin_name=self.plugin.name, then=then,
                                   room_id=self.room_id, key=key or f"{self._key_base()}:{then}")

    def render_string(self, source: str, /, *, name: str = "<inline>", **variables: Any) -> Any:
        """Render template text an admin wrote in a data file (e.g. an FAQ answer), with the standard variables."""
        base: dict[str, Any] = {"member": self.member, "room": self.room, "now": self.now, "config": self.config,
                                "bot_name": self.bot_name}
        base.update(variables)
        return self._rt.renderer.render_string(source, name=name, **base)

    # --- durable timers -----------------------------------------------------------

    def schedule(self, name: str, *, at: datetime | None = None, delay: timedelta | None = None, key: str,
                 data: dict[str, Any] | None = None, room_id: str | None = None,
                 member_id: str | None = None) -> None:
        """Run this plugin's `@plugin.timer(name)` handler later; survives restarts, once per `key`."""
        if name not in self.plugin.timers:
            raise ValueError(f"plugin {self.plugin.name} has no timer named {name!r}")
        if (at is None) == (delay is None):
            raise ValueError("schedule() takes exactly one of at or delay")
        due = at if at is not None else self.now + delay  # type: ignore[operator]
        task_id = self._rt.tasks.add(
            self.db, account=self.account, plugin=self.plugin.name, name=name, key=key, due_at=due,
            data=data or {}, room_id=room_id if room_id is not None else self.room_id,
            member_id=member_id if member_id is not None else self.member_id,
        )
        if task_id is not None:
            self._armed.append(task_id)

    def cancel_scheduled(self, key: str) -> bool:
        """Cancel a pending timer of this plugin; True if one was pending."""
        return self._rt.tasks.cancel(self.db, account=self.account, plugin=self.plugin.name, key=key)

    # --- runtime hooks --------------------------------------------------------

    def _release(self) -> None:
        """Close the session if only a rule or permission check used it (a group's shared one stays open)."""
        session, self._session = self._session, None
        group = current_group()
        if session is not None and self._savepoint is None and not (group is not None and group.shares(session)):
            session.close()

    def _begin(self) -> None:
        """Before a handler runs: in a group commit, open its savepoint (its own session otherwise)."""
        group = current_group()
        if group is not None:
            self._session, self._savepoint = group.begin()

    def _finish(self, ok: bool) -> bool:
        """Commit or roll back the handler's work; True if anything was queued or armed."""
        if self._savepoint is not None:
            savepoint, self._savepoint, self._session = self._savepoint, None, None
            group = current_group()
            assert group is not None
            group.end(savepoint, ok)
            return ok and (self._sends > 0 or bool(self._armed))
        if self._session is None:
            return False
        try:
            if ok:
                self._session.commit()
            else:
                self._session.rollback()
        finally:
            self._session.close()
        return ok and (self._sends > 0 or bool(self._armed))


def render_merged(runtime: ContextHost, template: str, plugin_name: str, room: str, parts: list[dict[str, Any]],
                  *, fallback: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Replies merged into one message: (text, mentions) of `template` over all their parts, rendered as the
    replying plugin's context renders (the last member to join is `member`). Rendered once, when it is sent.

    With `fallback` (the first reply's own text), a template that broke after the message began still
    acknowledges everyone: their @-names before that text."""
    everyone = tuple(dict.fromkeys(part["member"]["id"] for part in parts))
    try:
        rendered = runtime.renderer.render(
            template, member=runtime.members.member_info(parts[-1]["member"]["id"], room),
            room=runtime.members.room_info(room), now=runtime.clock.now(),
            config=runtime.plugin_config(plugin_name, room), items=parts, count=len(parts))
    except TemplateError as err:
        if fallback is None:
            raise
        logging.getLogger(f"qunbot.plugin.{plugin_name}").error(
            "could not render %s over %d merged replies; sending the first one's text to all of them: %s",
            template, len(parts), err)
        return runtime.members.with_mentions(fallback, everyone, room), everyone
    everyone = tuple(dict.fromkeys([*everyone, *rendered.mentions]))
    return runtime.members.with_mentions(rendered.text, everyone, room), everyone


def validate_config(model: type[BaseModel] | None, raw: dict[str, Any]) -> Any:
    return None if model is None else model.model_validate(raw)
