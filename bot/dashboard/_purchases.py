"""POST /api/purchases: a shop reports sales so members move to the purchased and loyal stages.

JSON in, JSON out (docs/dashboard.md has the format). The whole batch is validated before anything
is written and written in one transaction: a bad order rejects the batch and writes nothing.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot._db import session_scope
from bot.dashboard._body import API_LIMIT, BodyTooLarge, read_body
from bot.insight import InsightService, Purchase

MAX_BATCH = 1000
MAX_DEPTH = 8
"""A batch is three levels deep; anything deeper is refused before the JSON parser recurses into it."""
_STRUCTURE = re.compile(rb'["\\\[\]{}]')
MAX_AMOUNT = Decimal("10000000")
"""Ten million in the main unit per order: far above any sale, far below what the cents column holds."""
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128)
    member_id: str = Field(min_length=1, max_length=128)
    amount: Decimal
    """In the currency's main unit, e.g. 199.00 yuan (a JSON number or a string)."""
    paid_at: datetime
    room_id: str | None = None
    currency: str = Field("CNY", min_length=3, max_length=3)
    item: str = Field("", max_length=200)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not 0 <= value <= MAX_AMOUNT:
            raise ValueError(f"amount must be a number from 0 to {MAX_AMOUNT}")
        if value != value.quantize(Decimal("0.01")):
            raise ValueError("amount has more than 2 decimals")
        return value

    @field_validator("paid_at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("paid_at must be a time as text, such as 2026-11-24T20:15:00+08:00")
        return value

    @field_validator("paid_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("paid_at needs a UTC offset, such as 2026-11-24T20:15:00+08:00")
        try:
            in_range = EARLIEST <= value.astimezone(UTC) < LATEST
        except OverflowError:
            in_range = False
        if not in_range:
            raise ValueError(f"paid_at must be between {EARLIEST.year} and {LATEST.year}")
        return value


class PurchaseBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purchases: list[PurchaseIn] = Field(min_length=1, max_length=MAX_BATCH)


def _too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Brackets nested deeper than `limit` outside strings. Checked first because json.loads recurses in C:
    with a high recursion limit a deep enough body overflows the stack instead of raising RecursionError."""
    depth, in_string, skip = 0, False, -1
    for match in _STRUCTURE.finditer(body):
        if match.start() == skip:
            continue
        char = match.group()
        if in_string:
            if char == b"\\":
                skip = match.end()
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def purchase_endpoint(engine: Engine, service: InsightService, token: str, now: Callable[[], datetime]) -> Any:
    async def receive(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            return _error(401, "missing or wrong token: send Authorization: Bearer <token>")
        try:
            body = await read_body(request, API_LIMIT)
        except BodyTooLarge as err:
            return _error(413, str(err))
        if _too_deep(body):
            return _error(400, f"body: JSON nested deeper than {MAX_DEPTH} levels")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _error(400, f"body is not JSON: {err}")
        except RecursionError:
            return _error(400, "body: JSON nested too deeply")
        if isinstance(data, dict) and "purchases" not in data:
            data = {"purchases": [data]}  # one order on its own
        try:
            batch = PurchaseBatch.model_validate(data)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(422, f"{where}: {first['msg'].removeprefix('Value error, ')}")
        except (InvalidOperation, TypeError) as err:
            return _error(422, f"bad value: {err}")
        purchases = [Purchase(p.order_id, p.member_id, int(p.amount * 100), p.paid_at, p.room_id, p.currency.upper(),
                              p.item) for p in batch.purchases]
        with session_scope(engine) as session:
            accepted, duplicates = service.record_purchases(session, purchases, now())
        return JSONResponse({"accepted": accepted, "duplicates": duplicates})

    return receive
