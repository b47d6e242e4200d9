"""Opaque page tokens (AIP-158) and page-size limits shared by every List RPC."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, literal, tuple_

from server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: dict[str, Any]) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Our tokens hold a few keys; anything longer was not issued here.
MAX_TOKEN_CHARS = 1024
# An offset beyond this is not one of ours (and would overflow PostgreSQL's bigint).
MAX_OFFSET = 10_000_000
_NOT_OURS = "not a token this API issued"


def decode_token(token: str) -> dict[str, Any] | None:
    """The cursor a page token carries; INVALID_ARGUMENT (page_token) for anything a client
    made up: a forged token is the caller's mistake, never a server error."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument.field("page_token", _NOT_OURS)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument.field("page_token", _NOT_OURS) from exc
    if not isinstance(cursor, dict):
        raise InvalidArgument.field("page_token", _NOT_OURS)
    return cursor


def offset_of(cursor: dict[str, Any] | None, key: str = "o") -> int:
    """A validated offset from a cursor (0 without one)."""
    if cursor is None:
        return 0
    value = cursor.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OFFSET:
        raise InvalidArgument.field("page_token", _NOT_OURS)
    return value


T = TypeVar("T")


def keyset_page(
    rows: Sequence[T], size: int, cursor: Callable[[T], dict[str, Any]]
) -> tuple[list[T], str]:
    """Splits `size + 1` fetched rows into the page and the token of the next one (or "")."""
    page = list(rows[:size])
    return page, encode_token(cursor(page[-1])) if len(rows) > size else ""


def window(items: Sequence[T], size: int, token: str, *, cap: int) -> tuple[list[T], str]:
    """A page of a list held whole in memory (a provider's answer), by offset."""
    start = offset_of(decode_token(token))
    size = min(page_size(size), cap)
    more = start + size < len(items)
    return list(items[start : start + size]), encode_token({"o": start + size}) if more else ""


KeyKind = Literal["time", "uuid", "text"]
_MAX_TEXT_KEY = 512


def _key(value: Any, kind: KeyKind) -> Any:
    # Keys are written by keyset_page as strings; anything else was made up by a client.
    if not isinstance(value, str) or "\x00" in value or len(value) > _MAX_TEXT_KEY:
        raise InvalidArgument.field("page_token", _NOT_OURS)
    try:
        if kind == "time":
            at = dt.datetime.fromisoformat(value)
            if at.tzinfo is None:  # ours are always timezone-aware
                raise ValueError("naive time")
            return at
        if kind == "uuid":
            return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument.field("page_token", _NOT_OURS) from exc
    return value


def keyset_after(
    token: str,
    keys: Sequence[tuple[str, KeyKind]],
    columns: Sequence[Any],
    *,
    descending: bool,
) -> ColumnElement[bool] | None:
    """The condition that continues a keyset listing after the row a page token names.

    Args:
        token: the request's page_token (issued by `keyset_page`), or "".
        keys: the cursor's keys with the type of each, in sort order (("at", "time"), ...).
        columns: the sort columns, in the same order.
        descending: the listing's direction.

    Returns:
        None without a token; raises INVALID_ARGUMENT (page_token) for a token not ours.
    """
    cursor = decode_token(token)
    if cursor is None:
        return None
    values = tuple_(*(literal(_key(cursor.get(name), kind)) for name, kind in keys))
    row = tuple_(*columns)
    return row < values if descending else row > values
