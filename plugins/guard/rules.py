"""Guard rules as small strategies: each looks at one message and returns a `Finding` or None.

After AstrBot's content-safety strategies: a rule is one class with `detect(message)`; the plugin runs the
enabled ones in order and acts on the first finding. Rules only look; counting strikes and acting is the
policy's job (`policy.py`), so a rule can also check text the bot itself is about to send (the FAQ plugin).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from .qr import decode_qr


@dataclass(frozen=True, slots=True)
class Message:
    """What the rules see of one message: its text, the kind the adapter reported, and a local file if any."""

    text: str
    kind: str = "text"
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule matched: which rule, a short Chinese description for the warning, and the evidence."""

    rule: str
    label: str
    evidence: str

    @property
    def evidence_hash(self) -> str:
        """What the record keeps: a hash, so the record proves what was seen without storing the ad itself."""
        return hashlib.sha256(self.evidence.encode("utf-8")).hexdigest()[:16]


class Rule(Protocol):
    name: str

    def detect(self, message: Message) -> Finding | None: ...


def fold(text: str) -> str:
    """Undo the usual evasions: full-width forms (NFKC), zero-width characters, Chinese digits."""
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)
    return text.translate(_CN_DIGITS)


_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff]")
_CN_DIGITS = str.maketrans("零〇一二三四五六七八九壹贰叁肆伍陆柒捌玖幺两", "0012345678912345678912")
_GAP = r"[\s\-_.·•,，。/|*~+()（）\[\]【】]{0,3}"
"""What evaders put between digits: up to three spaces, dashes, dots or brackets."""


class LinkRule:
    """http(s) links and bare domains, except the operator's allowed domains (the brand's own shop)."""

    name = "link"

    _URL = re.compile(
        r"(?:https?://|www\.)[^\s<>\"']+"
        r"|\b[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*\."
        r"(?:com|cn|net|org|top|xyz|vip|cc|me|io|info|shop|club|site|online|ink|link)\b(?:/[^\s<>\"']*)?",
        re.IGNORECASE | re.ASCII,
    )

    def __init__(self, allowed_domains: Iterable[str] = ()) -> None:
        self.allowed = tuple(d.lower().lstrip(".") for d in allowed_domains)

    def detect(self, message: Message) -> Finding | None:
        if message.kind == "link":
            return Finding(self.name, "链接分享", message.text or "link")
        for match in self._URL.finditer(fold(message.text)):
            url = match.group(0)
            host = re.sub(r"^(?:https?://)?", "", url, flags=re.IGNORECASE).split("/")[0].split(":")[0].lower()
            if not any(host == d or host.endswith("." + d) for d in self.allowed):
                return Finding(self.name, "链接", url)
        return None


class QrCodeRule:
    """A QR code in an image the member sent: the main ad vector in WeChat groups (poster with a QR)."""

    name = "qrcode"

    def detect(self, message: Message) -> Finding | None:
        if message.file is None or message.kind not in ("image", "text", "file"):
            return None
        payload = decode_qr(message.file)
        return None if payload is None else Finding(self.name, "二维码图片", payload)


class ShareRule:
    """Mini-program cards, contact cards and other shares, as the adapter reports the message kind."""

    name = "share"
    LABELS: ClassVar[dict[str, str]] = {"mini_program": "小程序卡片", "contact_card": "名片", "channel": "视频号分享",
              "share": "分享卡片", "red_packet": "红包外链"}

    def __init__(self, kinds: Iterable[str] = ("mini_program", "contact_card", "channel", "share")) -> None:
        self.kinds = frozenset(kinds)

    def detect(self, message: Message) -> Finding | None:
        if message.kind in self.kinds:
            return Finding(self.name, self.LABELS.get(message.kind, "分享卡片"), f"{message.kind}:{message.text}")
        return None


class ContactRule:
    """Phone numbers and WeChat ids written out, also with spaces, dashes or full-width digits between."""

    name = "contact"

    _PHONE = re.compile(r"(?<!\d)1" + _GAP + "[3-9]" + (_GAP + r"\d") * 9 + r"(?!\d)")
    _WECHAT = re.compile(
        r"(?:(?:微信|威信|薇信|徽信|vx|v信|wx|weixin)\s*号?|\bv)\s*(?P<sep>[:：]|号)?\s*"
        r"(?P<id>[a-z][-_a-z0-9]{5,19})(?![-_a-z0-9])", re.IGNORECASE)

    def detect(self, message: Message) -> Finding | None:
        text = fold(message.text)
        phone = self._PHONE.search(text)
        if phone:
            return Finding(self.name, "手机号", re.sub(r"\D", "", phone.group(0)))
        for wechat in self._WECHAT.finditer(text):
            wid = wechat.group("id")
            # A bare word after 微信 is usually chatter ("微信 update 了"): an id needs a digit or a colon.
            if wechat.group("sep") or re.search(r"[\d_]", wid):
                return Finding(self.name, "微信号", wid)
        return None


class BannedWordRule:
    """Words the admins list in `data/guard.yaml`, matched after folding (so 加 微 信 still matches 加微信)."""

    name = "banned_word"

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(sorted({_squash(fold(w)) for w in words if w.strip()}, key=len, reverse=True))
        self._re = re.compile("|".join(map(re.escape, self.words)), re.IGNORECASE) if self.words else None

    def detect(self, message: Message) -> Finding | None:
        if self._re is None:
            return None
        match = self._re.search(_squash(fold(message.text)))
        return None if match is None else Finding(self.name, "违禁词", match.group(0))


def _squash(text: str) -> str:
    return re.sub(r"[\s\-_.·•*~]+", "", text)
