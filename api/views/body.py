"""Reading a request body as JSON, within a hard size limit, without ever answering 500.

The limit is checked against Content-Length before reading anything, and again while reading a
body sent without one (chunked), so an oversized body is never held in memory whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from aiohttp import web

from gomailpy.errors import MalformedRequestError

EXPECTED_SHAPE = '{"email": {...}}'
# JSON can spell a lone UTF-16 surrogate ("\\ud800"), which is no Unicode character: such text
# can be neither validated as an address nor encoded for the queue, so it is refused up front.
_SURROGATE = re.compile("[\ud800-\udfff]")


def too_large(limit: int, size: int | None = None) -> MalformedRequestError:
    got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return MalformedRequestError(f"Request body is too large: {got}, the limit is {limit} bytes")


async def read_body(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit, declared)
    # Chunks are kept as they come and joined once: a small body arrives as one chunk and is
    # returned as it is, without a copy.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise MalformedRequestError(
            f"Request body is empty; expected JSON of the form {EXPECTED_SHAPE}"
        )
    try:
        # The fast path: orjson reads UTF-8 only and refuses lone surrogates itself, so what it
        # accepts needs no further check. Anything it refuses (UTF-16/32, NaN, nesting past its
        # 1024 levels) takes the standard library's path, which accepts or words the refusal
        # exactly as before.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(body)  # detects UTF-8/16/32 itself
    except RecursionError:
        # The C decoder stops at the interpreter's recursion limit, after ~1000 levels: cheap.
        raise MalformedRequestError("Request body is nested too deeply to be an email") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedRequestError(
            f"Request body is not valid JSON ({exc}); expected {EXPECTED_SHAPE}"
        ) from None
    if _has_lone_surrogate(value):
        raise MalformedRequestError(
            "Request body is not valid Unicode text: it contains a lone surrogate escape"
            " (\\ud800 to \\udfff not in a pair)"
        )
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # Iterative: a body may be nested as deeply as the JSON decoder allows.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


async def read_json(request: web.Request, limit: int) -> Any:
    """The decoded JSON body, or `MalformedRequestError` saying what is wrong with it."""
    return decode_json(await read_body(request, limit))
