"""Request bodies read up to a limit: a huge POST is refused after at most `limit` bytes, never held whole."""

from __future__ import annotations

from starlette.requests import Request

LOGIN_LIMIT = 4 * 1024
"""A login form is a password and a path."""
API_LIMIT = 2 * 1024 * 1024
"""A full purchase batch (MAX_BATCH orders) fits with room to spare."""


class BodyTooLarge(Exception):
    """The client sent (or announced) more than the limit."""


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
