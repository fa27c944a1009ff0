"""AI answers through an OpenAI-compatible chat endpoint (httpx), grounded in retrieved chunks only.

The model is told to answer only from the given excerpts and to say 不知道 otherwise; its answer is then
checked here, not trusted: an answer that states a price, stock or quantity the excerpts do not contain is
refused, because a wrong price in a customer group is worse than no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from .knowledge import Hit

SYSTEM_PROMPT = (
    "你是品牌社群里的答疑助手。只根据下面提供的资料回答群友的问题，用简短的中文（不超过 120 字）。"
    "资料里没有的内容，包括价格、库存、活动时间，一律不要编造，直接回答「不知道」。不要输出链接和联系方式。"
)
UNKNOWN = "不知道"
_FIGURE = re.compile(r"(?:[¥￥]\s*\d+(?:\.\d+)?|\d+(?:\.\d+)?\s*(?:元|块|折|件|瓶|盒|支|片|份|ml|g)"
                     r"|库存|现货|有货|缺货)")


class AiError(Exception):
    """The endpoint failed (timeout, HTTP error, malformed answer); the bot stays silent and logs it."""


@dataclass(frozen=True, slots=True)
class AiAnswer:
    text: str
    sources: tuple[str, ...]


def build_messages(question: str, hits: list[Hit]) -> list[dict[str, str]]:
    context = "\n\n".join(f"[资料{i + 1}：{h.chunk.source}]\n{h.chunk.text}" for i, h in enumerate(hits))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"资料：\n{context}\n\n群友的问题：{question}"}]


async def ask(client: httpx.AsyncClient, *, base_url: str, model: str, api_key: str | None, question: str,
              hits: list[Hit], timeout: float) -> str:
    """One chat completion; the answer text, or AiError."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": build_messages(question, hits), "temperature": 0.2, "max_tokens": 300}
    try:
        response = await client.post(f"{base_url.rstrip('/')}/chat/completions", json=body, headers=headers,
                                     timeout=timeout)
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"]
    except httpx.TimeoutException as err:
        raise AiError(f"AI 接口超时（{timeout:g} 秒）") from err
    except httpx.HTTPStatusError as err:
        raise AiError(f"AI 接口返回 HTTP {err.response.status_code}") from err
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as err:
        raise AiError(f"AI 接口不可用：{type(err).__name__}") from err
    if not isinstance(text, str):
        raise AiError("AI 接口的回答不是文字")
    return text.strip()


def stub_answer(question: str, hits: list[Hit]) -> str:
    """The offline stand-in for `simulate` and `chat`: the best excerpt's sentence sharing most of the words."""
    text = hits[0].chunk.text
    text = text.split("：", 1)[1] if "：" in text[:30] else text
    sentences = [s for s in re.split(r"(?<=[。！？!?])", text) if s.strip()]
    best = max(sentences, key=lambda s: sum(w in s for w in hits[0].shared))
    return best.strip()[:120]


def grounded(answer: str, hits: list[Hit]) -> bool:
    """False if the answer is a refusal, or states a price, stock or quantity that no excerpt contains."""
    if not answer or UNKNOWN in answer[:12]:
        return False
    context = "".join(h.chunk.text for h in hits).replace(" ", "")
    return all(figure.replace(" ", "") in context for figure in _FIGURE.findall(answer))
