"""poll (投票 / 预售选款): members vote by number or option text; admins later @ exactly one option's voters.

The follow-up is the point: when the chosen product launches, the operator tells precisely the members
who asked for it, in as many messages as WeChat's mention limits need.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from bot import ROOM_ADMIN, Context, Merge, Plugin, explain_validation, insert_unique, parse_duration

from .models import Poll, PollVote
from .parsing import choice, normalize, parse_poll


class PollConfig(BaseModel):
    open_words: list[str] = ["发起投票", "开始投票"]
    close_words: list[str] = ["结束投票"]
    result_words: list[str] = ["投票结果"]
    follow_up_words: list[str] = ["通知投票", "投票通知"]
    vote_words: list[str] = ["投票", "投", "选"]
    """A vote is one of these followed by a number or option text (`投2`, `选 保湿面膜`)."""
    bare_votes: bool = True
    """Also count a message that is only a number or an option's text while a poll is open."""
    allow_change: bool = True
    """A later vote replaces the earlier one; False: the first vote stands."""
    confirm_votes: bool = True
    max_mentions: int = Field(20, ge=1, le=100)
    """@-mentions per follow-up message; longer voter lists are split across messages."""


class OpenPoll(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    options: list[str] = Field(min_length=2, max_length=20)
    duration: str | None = None
    allow_change: bool | None = None


_NAMES = {"title": "标题", "options": "选项", "duration": "时长"}


class FollowUp(BaseModel):
    """`option`: the number (1-based) or text of an option; `poll`: an id (default: the room's latest poll)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    option: str
    text: str = Field(min_length=1)
    poll: int | None = None


class ClosePoll(BaseModel):
    model_config = ConfigDict(extra="forbid")


plugin = Plugin(
    name="poll",
    description="投票 / 预售选款：按编号投票，上新时 @ 投过这一款的人",
    usage="管理员「发起投票 标题|选项1|选项2」；群友发送「投1」；「投票结果」；管理员「通知投票 1 到货啦」",
    config=PollConfig,
    needs={"read_room_messages"},
)

_open_polls: dict[str, list[str]] = {}
"""room id -> options of its open poll: a hint so chatter costs a dict lookup."""


def _vote_text(ctx: Context) -> str | None:
    """The part of the message that names an option, if this message is a vote."""
    options = _open_polls.get(ctx.room_id or "")
    if options is None:
        return None
    text = normalize(ctx.text)
    for word in sorted(ctx.config.vote_words, key=len, reverse=True):
        word = normalize(word)
        if word and text.startswith(word) and choice(text[len(word):], options) is not None:
            return text[len(word):]
    return text if ctx.config.bare_votes and choice(text, options) is not None else None


@plugin.on_startup
async def load_open_polls(ctx: Context) -> None:
    _open_polls.clear()
    for poll in ctx.db.exec(select(Poll).where(Poll.status == "open")):
        _open_polls[poll.room_id] = list(poll.options)


def _open_poll(ctx: Context) -> Poll | None:
    return ctx.db.exec(select(Poll).where(Poll.room_id == ctx.room_id, Poll.status == "open")).first()


# --- open ------------------------------------------------------------------------------------

opener = plugin.on_command("发起投票", "开始投票", words_from="open_words", permission=ROOM_ADMIN, priority=10)


@opener.handle
async def open_command(ctx: Context) -> None:
    try:
        title, options, duration = parse_poll(ctx.args)
        params = OpenPoll(title=title, options=options, duration=duration)
        if duration:
            parse_duration(duration)
    except ValidationError as err:  # before ValueError, its base: pydantic's English stays out of the group
        await ctx.reply(template="poll/usage.j2", error=explain_validation(err, OpenPoll, names=_NAMES))
        return
    except ValueError as err:
        await ctx.reply(template="poll/usage.j2", error=str(err).splitlines()[0])
        return
    await open_poll(ctx, params, opened_by=ctx.member_id)


@plugin.action("open", params=OpenPoll)
async def open_action(ctx: Context, params: OpenPoll) -> None:
    """SOP step: `action: {plugin: poll, name: open, params: {title: 下期选款, options: [口红, 面膜]}}`."""
    await open_poll(ctx, params, opened_by=None)


async def open_poll(ctx: Context, params: OpenPoll, *, opened_by: str | None) -> None:
    assert ctx.room_id is not None, "a poll needs a room"
    if _open_poll(ctx) is not None:
        await ctx.say(template="poll/usage.j2", error="本群已有一个进行中的投票，请先「结束投票」")
        return
    closes_at = ctx.now + parse_duration(params.duration) if params.duration else None
    poll = Poll(account=ctx.account, room_id=ctx.room_id, title=params.title, options=params.options,
                allow_change=ctx.config.allow_change if params.allow_change is None else params.allow_change,
                opened_by=opened_by, opened_at=ctx.now, closes_at=closes_at)
    ctx.db.add(poll)
    ctx.db.flush()
    if closes_at is not None:
        ctx.schedule("close", at=closes_at, key=f"close:{poll.id}", data={"poll_id": poll.id})
    _open_polls[ctx.room_id] = list(poll.options)
    await ctx.say(template="poll/opened.j2", poll=poll)


# --- vote --------------------------------------------------------------------------------------

voter = plugin.on_message(rule=lambda ctx: _vote_text(ctx) is not None, priority=30, block=True)


@voter.handle
async def vote(ctx: Context) -> None:
    assert ctx.member_id is not None
    poll, said = _open_poll(ctx), _vote_text(ctx)
    index = None if poll is None or said is None else choice(said, poll.options)
    if poll is None or index is None:
        return
    inserted = insert_unique(ctx.db, PollVote, poll_id=poll.id, member_id=ctx.member_id, option=index,
                             voted_at=ctx.now, changes=0)
    outcome = "voted"
    if not inserted:
        ballot = ctx.db.exec(select(PollVote).where(PollVote.poll_id == poll.id,
                                                    PollVote.member_id == ctx.member_id)).one()
        if ballot.option == index:
            outcome = "same"
        elif poll.allow_change:
            ballot.option, ballot.voted_at, ballot.changes = index, ctx.now, ballot.changes + 1
            ctx.db.add(ballot)
            outcome = "changed"
        else:
            outcome, index = "kept", ballot.option
    if ctx.config.confirm_votes:
        await ctx.reply(template="poll/voted.j2", poll=poll, outcome=outcome, number=index + 1,
                        option=poll.options[index],
                        merge=Merge(f"poll.voted:{poll.id}", "poll/voted_merged.j2",
                                    {"outcome": outcome, "number": index + 1, "option": poll.options[index]}))


# --- results and close ------------------------------------------------------------------------------

results = plugin.on_fullmatch("投票结果", words_from="result_words", priority=10)


@results.handle
async def show_results(ctx: Context) -> None:
    poll = _open_poll(ctx) or _latest(ctx)
    if poll is None:
        await ctx.reply(template="poll/none.j2")
        return
    await ctx.say(template="poll/results.j2", **_tally(ctx, poll), final=poll.status == "closed")


closer = plugin.on_fullmatch("结束投票", words_from="close_words", permission=ROOM_ADMIN, priority=10)


@closer.handle
async def close_command(ctx: Context) -> None:
    poll = _open_poll(ctx)
    if poll is None:
        await ctx.reply(template="poll/none.j2")
        return
    await close_poll(ctx, poll)


@plugin.action("close", params=ClosePoll)
async def close_action(ctx: Context, params: ClosePoll) -> None:
    poll = _open_poll(ctx)
    if poll is not None:
        await close_poll(ctx, poll)


@plugin.timer("close")
async def close_due(ctx: Context) -> None:
    assert ctx.task is not None
    poll = ctx.db.get(Poll, int(ctx.task.data["poll_id"]))  # type: ignore[call-overload]
    if poll is not None and poll.status == "open":
        await close_poll(ctx, poll)


async def close_poll(ctx: Context, poll: Poll) -> None:
    poll.status, poll.closed_at = "closed", ctx.now
    ctx.db.add(poll)
    ctx.cancel_scheduled(f"close:{poll.id}")
    _open_polls.pop(poll.room_id, None)
    await ctx.say(template="poll/results.j2", **_tally(ctx, poll), final=True)


def _latest(ctx: Context) -> Poll | None:
    return ctx.db.exec(select(Poll).where(Poll.room_id == ctx.room_id).order_by(col(Poll.id).desc())).first()


def _tally(ctx: Context, poll: Poll) -> dict[str, object]:
    counts = [0] * len(poll.options)
    for option in ctx.db.exec(select(PollVote.option).where(PollVote.poll_id == poll.id)):
        counts[option] += 1
    rows = [{"number": i + 1, "option": text, "votes": counts[i]} for i, text in enumerate(poll.options)]
    return {"poll": poll, "rows": rows, "total": sum(counts)}


# --- follow-up: @ the voters of one option ---------------------------------------------------------------

follow = plugin.on_command("通知投票", "投票通知", words_from="follow_up_words", permission=ROOM_ADMIN, priority=10)


@follow.handle
async def follow_up_command(ctx: Context) -> None:
    option, _, text = ctx.args.partition(" ")
    if not option or not text.strip():
        await ctx.reply(template="poll/usage.j2", error="用法：通知投票 选项编号 通知内容")
        return
    await follow_up(ctx, FollowUp(option=option, text=text.strip()))


@plugin.action("follow_up", params=FollowUp)
async def follow_up_action(ctx: Context, params: FollowUp) -> None:
    """SOP step: `action: {plugin: poll, name: follow_up, params: {option: 2, text: 面膜到货啦}}`."""
    await follow_up(ctx, params)


async def follow_up(ctx: Context, params: FollowUp) -> None:
    poll = ctx.db.get(Poll, params.poll) if params.poll is not None else _latest(ctx)
    if poll is None or poll.room_id != ctx.room_id:
        await ctx.say(template="poll/none.j2")
        return
    index = choice(params.option, poll.options)
    if index is None:
        await ctx.say(template="poll/usage.j2", error=f"没有选项「{params.option}」")
        return
    voters = ctx.db.exec(select(PollVote.member_id).where(PollVote.poll_id == poll.id, PollVote.option == index)
                         .order_by(col(PollVote.voted_at), col(PollVote.id))).all()
    if not voters:
        await ctx.say(template="poll/no_voters.j2", poll=poll, option=poll.options[index])
        return
    size = ctx.config.max_mentions
    chunks = [voters[i:i + size] for i in range(0, len(voters), size)]
    for part, chunk in enumerate(chunks, start=1):
        await ctx.say(template="poll/follow_up.j2", poll=poll, option=poll.options[index], notice=params.text,
                      voters=[ctx.member_info(v) for v in chunk], part=part, parts=len(chunks))
