"""Which FAQ entry a member's message asks, with a score you can explain.

Two ways an entry is found, and the higher score wins:
- **keywords**: every word of one of its keyword lines appears in the message (after folding full-width
  forms and case) — score `keyword_score`;
- **questions**: the message is compared with each example question after jieba word segmentation, with
  function words (吗、呢、请问…) left out: rapidfuzz's `token_set_ratio` on the words, which forgives word
  order and extra words (used only when the message shares at least half of the example's words;
  `token_sort_ratio` otherwise), and `ratio` on the characters, which forgives segmentation quirks; the
  better one.
`faq test` prints both, so an admin sees why an entry answered.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

import jieba
from rapidfuzz import fuzz

from .bank import FaqEntry

jieba.setLogLevel(logging.WARNING)

_STOPWORDS_TEXT = """
吗 呢 吧 啊 呀 哦 哈 嘛 么 的 了 着 过 是 我 你 他 她 它 我们 你们 这 那 这个 那个 这款 那款 个 款 一下 请问 问下
问一下 想 想问 能 能不能 可以 可不可以 会 会不会 要 不要 有 有没有 没有 还 都 也 就 和 跟 与 在 用 怎么 怎样
什么 多少 几 哪 哪里 哪儿 如何 为什么 不 嗯 请 亲 群主 小完子 一 下 啥 咋 么样 样 是不是 对 得 谁 你们家 大家
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
"""Function words left out of matching: they make every question look alike."""
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_MENTION = re.compile(r"@\S+[\s\u2005]?")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


def normalize(text: str) -> str:
    """Fold full-width forms and case, drop @-mentions, emoji, punctuation and spaces."""
    text = _MENTION.sub(" ", unicodedata.normalize("NFKC", text))
    return _PUNCT.sub("", _EMOJI.sub("", text)).lower()


def words(text: str) -> list[str]:
    """Content words of a normalized text (jieba), function words left out."""
    return [w for w in jieba.lcut(text) if w.strip() and w not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class Match:
    entry: FaqEntry
    score: float
    how: str
    """What matched, for `faq test`: the keyword line or the example question."""


@dataclass(slots=True)
class _Indexed:
    entry: FaqEntry
    examples: list[tuple[str, str, str]]
    """(question as written, normalized, its words joined by spaces)"""
    keyword_lines: list[tuple[str, list[str]]]


class FaqMatcher:
    """An index over the bank's entries; `rank` scores a message against every entry."""

    def __init__(self, entries: list[FaqEntry], *, keyword_score: float = 90) -> None:
        self.keyword_score = keyword_score
        self._entries: list[_Indexed] = []
        for entry in entries:
            examples = [(q, normalize(q), " ".join(words(normalize(q)))) for q in entry.questions]
            lines = [(line, [normalize(w) for w in line.split()]) for line in entry.keywords]
            self._entries.append(_Indexed(entry, examples, [(line, ws) for line, ws in lines if any(ws)]))

    def rank(self, text: str, *, entries: set[str] | None = None) -> list[Match]:
        """Every entry's best score for `text`, best first (only entries in `entries`, if given)."""
        norm = normalize(text)
        if not norm:
            return []
        joined = " ".join(words(norm))
        found: list[Match] = []
        for item in self._entries:
            if entries is not None and item.entry.id not in entries:
                continue
            best = Match(item.entry, 0.0, "")
            for line, needed in item.keyword_lines:
                if all(w in norm for w in needed) and self.keyword_score > best.score:
                    best = Match(item.entry, self.keyword_score, f"关键词「{line}」")
            for question, q_norm, q_words in item.examples:
                by_words = self._by_words(joined, q_words)
                by_chars = fuzz.ratio(norm, q_norm)
                score = max(by_words, by_chars)
                if score > best.score:
                    best = Match(item.entry, round(score, 1), f"问法「{question}」")
            if best.score > 0:
                found.append(best)
        found.sort(key=lambda m: -m.score)
        return found

    @staticmethod
    def _by_words(asked: str, example: str) -> float:
        """token_set_ratio (word order and extra words forgiven), but only when the message shares at least
        half of the example's words: otherwise one common word ("好") would make "大家好" a perfect match."""
        if not asked or not example:
            return 0.0
        mine, theirs = set(asked.split()), set(example.split())
        if 2 * len(mine & theirs) < len(theirs):
            return fuzz.token_sort_ratio(asked, example)
        return fuzz.token_set_ratio(asked, example)

    def best(self, text: str, threshold: float, *, entries: set[str] | None = None) -> Match | None:
        ranked = self.rank(text, entries=entries)
        return ranked[0] if ranked and ranked[0].score >= threshold else None
