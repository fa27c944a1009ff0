"""quiz (答题): rounds of questions from `data/quiz/*.yaml`; the first right answers win points.

Each question stays open for a set time (a durable timer), then the answer and its explanation are
revealed; a scoreboard ends the round. One answer per member per question counts — the first — and
the database's unique constraint, not Python, is what enforces it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, func, select

from bot import ROOM_ADMIN, Context, Merge, Plugin, insert_unique

from .bank import LETTERS, Question, check_banks, find_bank
from .matching import is_correct, looks_like_answer
from .models import QuizAnswer, QuizRound


class QuizConfig(BaseModel):
    start_words: list[str] = ["开始答题", "答题开始"]
    stop_words: list[str] = ["结束答题"]
    banks_dir: str = "data/quiz"
    questions_per_round: int = Field(3, ge=1, le=50)
    question_seconds: int = Field(60, ge=5, le=3600)
    winners_per_question: int = Field(1, ge=1, le=100)
    """The first K right answers win points."""
    max_answer_length: int = Field(20, ge=1)
    """Free-answer questions: longer messages are chatter, not attempts."""


class StartQuiz(BaseModel):
    """SOP step params; anything left out comes from `[plugins.quiz]`."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = None
    questions: int | None = Field(None, ge=1, le=50)
    seconds: int | None = Field(None, ge=5, le=3600)
    winners: int | None = Field(None, ge=1, le=100)


plugin = Plugin(
    name="quiz",
    description="答题：限时抢答，答对得积分，结束时公布排行",
    usage="管理员发送「开始答题 题库名 题数」；题目出现后直接回复答案，如「B」或「选B」",
    config=QuizConfig,
    requires=["points"],
    needs={"read_room_messages"},
)

_asking: dict[str, QuizRound] = {}
"""room id -> its running round (with the question being asked): lets chatter skip the database."""


@plugin.on_check
def check_question_banks(project: Path, config: QuizConfig | None) -> list[str]:
    return list(check_banks(project / (config.banks_dir if config else QuizConfig().banks_dir)))


@plugin.on_startup
async def load_running_rounds(ctx: Context) -> None:
    _asking.clear()
    for quiz in ctx.db.exec(select(QuizRound).where(QuizRound.status == "running")):
        _asking[quiz.room_id] = quiz


def _question(quiz: QuizRound, index: int | None = None) -> Question:
    return Question.model_validate(quiz.questions[quiz.current if index is None else index])


# --- start ------------------------------------------------------------------------------------

starter = plugin.on_command("开始答题", "答题开始", words_from="start_words", permission=ROOM_ADMIN, priority=10)


@starter.handle
async def start_command(ctx: Context) -> None:
    words = ctx.args.split()
    count = next((int(w) for w in words if w.isdigit()), None)
    bank = next((w for w in words if not w.isdigit()), None)
    await start_round(ctx, StartQuiz(bank=bank, questions=count), started_by=ctx.member_id)


@plugin.action("start", params=StartQuiz)
async def start_action(ctx: Context, params: StartQuiz) -> None:
    """SOP step: `action: {plugin: quiz, name: start, params: {bank: skincare, questions: 5}}`."""
    await start_round(ctx, params, started_by=None)


async def start_round(ctx: Context, params: StartQuiz, *, started_by: str | None) -> None:
    assert ctx.room_id is not None, "a quiz needs a room"
    config: QuizConfig = ctx.config
    running = ctx.db.exec(select(QuizRound.id).where(QuizRound.room_id == ctx.room_id,
                                                     QuizRound.status == "running")).first()
    if running is not None:
        await ctx.say(template="quiz/usage.j2", error="本群正在答题，等这一轮结束再开始吧")
        return
    try:
        bank_id, bank = find_bank(_banks_dir(ctx), params.bank)
    except LookupError as err:
        ctx.log.warning("quiz not started: %s", err)
        await ctx.say(template="quiz/usage.j2", error=f"没有找到题库「{params.bank or ''}」（{err}）")
        return
    count = min(params.questions or config.questions_per_round, len(bank.questions))
    quiz = QuizRound(
        account=ctx.account, room_id=ctx.room_id, bank=bank_id,
        questions=[q.model_dump() for q in bank.questions[:count]], seconds=params.seconds or config.question_seconds,
        winners_per_question=params.winners or config.winners_per_question, default_points=bank.points,
        started_by=started_by, started_at=ctx.now,
    )
    ctx.db.add(quiz)
    ctx.db.flush()
    await ctx.say(template="quiz/started.j2", quiz=quiz, title=bank.name, count=count)
    await _ask(ctx, quiz, 0)


def _banks_dir(ctx: Context) -> Path:
    folder = Path(ctx.config.banks_dir)
    return folder if folder.is_absolute() else ctx.project / folder


async def _ask(ctx: Context, quiz: QuizRound, index: int) -> None:
    quiz.current = index
    ctx.db.add(quiz)
    question = _question(quiz, index)
    ctx.schedule("close", delay=timedelta(seconds=quiz.seconds), key=f"close:{quiz.id}:{index}",
                 data={"round_id": quiz.id, "question": index}, room_id=quiz.room_id)
    _asking[quiz.room_id] = quiz
    await ctx.say(template="quiz/question.j2", quiz=quiz, number=index + 1, total=len(quiz.questions),
                  question=question, letters=LETTERS, points=_points(quiz, question))


def _points(quiz: QuizRound, question: Question) -> int:
    return quiz.default_points if question.points is None else question.points


# --- answers ------------------------------------------------------------------------------------


def _is_attempt(ctx: Context) -> bool:
    quiz = _asking.get(ctx.room_id or "")
    if quiz is None:
        return False
    question = _question(quiz)
    return looks_like_answer(ctx.text, choices=question.choices, max_length=ctx.config.max_answer_length)


answers = plugin.on_message(rule=_is_attempt, priority=20, block=True)


@answers.handle
async def answer(ctx: Context) -> None:
    assert ctx.room_id is not None and ctx.member_id is not None
    cached = _asking.get(ctx.room_id)
    quiz = ctx.db.get(QuizRound, cached.id) if cached else None
    if quiz is None or quiz.status != "running" or ctx.is_room_admin():
        return  # admins run the quiz; they do not compete
    index = quiz.current
    question = _question(quiz, index)
    correct = is_correct(ctx.text, choices=question.choices, right=question.right_choice(),
                         accepted=question.accepted())
    first = insert_unique(ctx.db, QuizAnswer, round_id=quiz.id, question=index, member_id=ctx.member_id,
                          text=ctx.text[:200], correct=correct, awarded=0, answered_at=ctx.now)
    if not first or not correct:
        return  # only the first answer counts; wrong answers stay quiet so others keep trying
    rank = ctx.db.exec(select(func.count()).select_from(QuizAnswer).where(
        QuizAnswer.round_id == quiz.id, QuizAnswer.question == index, col(QuizAnswer.correct))).one()
    if rank > quiz.winners_per_question:
        return
    points = _points(quiz, question)
    row = ctx.db.exec(select(QuizAnswer).where(QuizAnswer.round_id == quiz.id, QuizAnswer.question == index,
                                               QuizAnswer.member_id == ctx.member_id)).one()
    granted = ctx.service("points").grant(
        ctx.db, room_id=ctx.room_id, member_id=ctx.member_id, amount=points, reason=f"答题第{index + 1}题答对",
        source="quiz", key=f"quiz:{quiz.id}:{index}:{ctx.member_id}", at=ctx.now)
    row.awarded = points if granted else 0
    ctx.db.add(row)
    awarded = points if granted else 0
    await ctx.reply(template="quiz/correct.j2", rank=rank, points=awarded, number=index + 1,
                    merge=Merge(f"quiz.correct:{quiz.id}:{index}", "quiz/correct_merged.j2",
                                {"rank": rank, "points": awarded}))


# --- closing a question, ending the round ----------------------------------------------------------


@plugin.timer("close")
async def close_question(ctx: Context) -> None:
    assert ctx.task is not None
    quiz = ctx.db.get(QuizRound, int(ctx.task.data["round_id"]))  # type: ignore[call-overload]
    index = int(ctx.task.data["question"])  # type: ignore[call-overload]
    if quiz is None or quiz.status != "running" or quiz.current != index:
        return
    question = _question(quiz, index)
    winners = ctx.db.exec(select(QuizAnswer.member_id).where(
        QuizAnswer.round_id == quiz.id, QuizAnswer.question == index, QuizAnswer.awarded > 0)
        .order_by(col(QuizAnswer.id))).all()
    await ctx.say(template="quiz/reveal.j2", number=index + 1, question=question, answer=question.answer_text(),
                  winners=[ctx.member_info(w) for w in winners])
    if index + 1 < len(quiz.questions):
        await _ask(ctx, quiz, index + 1)
    else:
        await _finish(ctx, quiz)


stopper = plugin.on_fullmatch("结束答题", words_from="stop_words", permission=ROOM_ADMIN, priority=10)


@stopper.handle
async def stop_command(ctx: Context) -> None:
    cached = _asking.get(ctx.room_id or "")
    quiz = ctx.db.get(QuizRound, cached.id) if cached else None
    if quiz is not None and quiz.status == "running":
        ctx.cancel_scheduled(f"close:{quiz.id}:{quiz.current}")
        await _finish(ctx, quiz)


async def _finish(ctx: Context, quiz: QuizRound) -> None:
    quiz.status, quiz.finished_at = "finished", ctx.now
    ctx.db.add(quiz)
    _asking.pop(quiz.room_id, None)
    totals = ctx.db.exec(select(QuizAnswer.member_id, func.sum(QuizAnswer.awarded), func.count())
                         .where(QuizAnswer.round_id == quiz.id, col(QuizAnswer.correct))
                         .group_by(QuizAnswer.member_id)).all()
    board = sorted(totals, key=lambda row: (-row[1], -row[2], row[0]))
    rows = [{"member": ctx.member_info(m), "points": p, "right": n} for m, p, n in board]
    await ctx.say(template="quiz/scoreboard.j2", quiz=quiz, rows=rows)
