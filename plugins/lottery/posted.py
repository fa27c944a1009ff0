"""What the room sees of a draw, in a fixed form the plugin writes itself (not the admins' templates), so
`verify` can read the commitment, the terms, the entrant count and the public value back from the posts.

Templates word the message; these lines are appended to it and say the same things in every project.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from .fairness import fingerprint
from .options import parse_command

TERMS = "规则："
_COMMITMENT = re.compile(r"sha256\(种子\) = ([0-9a-f]{64})")
_SEED = re.compile(r"种子：([0-9a-f]{64})")
_ENTRANTS = re.compile(r"参与 (\d+) 人，名单指纹 ([0-9a-f]{16})")
_VALUE = re.compile(r"公开值：(.*?)（")
MODE_WORDS = {"seed": "种子", "beacon": "信标", "announced": "公布"}


def _moment(value: datetime, tz: tzinfo) -> str:
    return value.astimezone(tz).isoformat(sep=" ")


def terms_line(draw: Any, tz: tzinfo) -> str:
    """`规则：奖品=… 名额=… 口令=… 截止=…` in the admin command's own syntax, read back by `parse_terms`."""
    parts = [f"奖品={draw.prize}", f"名额={draw.winners_count}", f"口令={draw.keyword}",
             f"截止={_moment(draw.deadline, tz)}"]
    if draw.mode == "beacon":
        parts += ["开奖方式=信标", f"信标轮次={draw.beacon_round}"]
    elif draw.mode == "announced":
        parts += ["开奖方式=公布", f"公布来源={draw.announce_source}"]
    return TERMS + " ".join(parts)


def opened_footer(draw: Any, tz: tzinfo, beacon_time: datetime | None) -> str:
    lines = [f"公平承诺（第 {draw.number} 期）：sha256(种子) = {draw.commitment}", terms_line(draw, tz)]
    if draw.mode == "beacon" and beacon_time is not None:
        lines.append(f"截止后，drand 第 {draw.beacon_round} 轮公开随机数（{_moment(beacon_time, tz)} 产生）"
                     "与种子混合后开奖：截止前谁都算不出结果。开奖时公布种子，人人可核验。")
    elif draw.mode == "announced":
        lines.append(f"截止后，由管理员公布「{draw.announce_source}」，与种子混合后开奖：截止前谁都算不出结果。"
                     "开奖时公布种子，人人可核验。")
    else:
        lines.append("开奖时公布种子，人人可按公开算法复算结果。")
    return "\n".join(lines)


def entrants_line(entrants: list[str]) -> str:
    return f"参与 {len(entrants)} 人，名单指纹 {fingerprint(entrants)}"


def closed_footer(draw: Any, tz: tzinfo, beacon_time: datetime | None) -> str:
    lines = [f"报名截止（第 {draw.number} 期）：{entrants_line(draw.entrants)}"]
    if draw.mode == "beacon":
        when = f"（{_moment(beacon_time, tz)}）" if beacon_time else ""
        lines.append(f"等 drand 第 {draw.beacon_round} 轮随机数{when}产生后开奖。")
    else:
        lines.append(f"请管理员在「{draw.announce_source}」公布后发送：公布开奖号 {draw.number} <公布的数值>")
    return "\n".join(lines)


def drawn_footer(draw: Any, effective_seed: str) -> str:
    lines = [f"种子：{draw.seed}", entrants_line(draw.entrants)]
    if draw.mode != "seed":
        source = f"drand 第 {draw.beacon_round} 轮随机数" if draw.mode == "beacon" else f"「{draw.announce_source}」"
        lines += [f"公开值：{draw.public_value}（{source}）", f"混合种子：sha256(种子:公开值) = {effective_seed}"]
    lines.append(f"核验：sha256(种子) 应等于开奖前公布的 {draw.commitment[:16]}…，按公开算法可复算中奖名单"
                 f"（qunbot lottery verify {draw.id}）。")
    return "\n".join(lines)


def normalize_value(text: str) -> str:
    """An announced value as it is mixed in: NFKC, spaces collapsed (the same digits typed twice agree)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class Posted:
    """What the posts of one draw say, as read back from their text."""

    commitments: list[str]
    terms: Any | None
    terms_error: str | None
    seeds: list[str]
    entrants: list[tuple[int, str]]
    public_values: list[str]


def read_posts(texts: list[str]) -> Posted:
    terms, error = None, None
    lines = [line.strip() for text in texts for line in text.splitlines()]
    found = [line.removeprefix(TERMS) for line in lines if line.startswith(TERMS)]
    if found:
        try:
            terms = parse_command(found[0], posted=True)
        except ValueError as err:
            error = str(err)
    joined = "\n".join(texts)
    return Posted(commitments=_COMMITMENT.findall(joined), terms=terms, terms_error=error,
                  seeds=_SEED.findall(joined), entrants=[(int(n), fp) for n, fp in _ENTRANTS.findall(joined)],
                  public_values=_VALUE.findall(joined))
