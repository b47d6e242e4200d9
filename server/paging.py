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


def decode_token(token: str) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument.field("page_token", "not a token this API issued") from exc
    if not isinstance(cursor, dict):
        raise InvalidArgument.field("page_token", "not a token this API issued")
    return cursor


T = TypeVar("T")


def keyset_page(
    rows: Sequence[T], size: int, cursor: Callable[[T], dict[str, Any]]
) -> tuple[list[T], str]:
    """Splits `size + 1` fetched rows into the page and the token of the next one (or "")."""
    page = list(rows[:size])
    return page, encode_token(cursor(page[-1])) if len(rows) > size else ""


def window(items: Sequence[T], size: int, token: str, *, cap: int) -> tuple[list[T], str]:
    """A page of a list held whole in memory (a provider's answer), by offset."""
    start = int((decode_token(token) or {}).get("o", 0))
    size = min(page_size(size), cap)
    more = start + size < len(items)
    return list(items[start : start + size]), encode_token({"o": start + size}) if more else ""


KeyKind = Literal["time", "uuid", "text"]
_NOT_OURS = "not a token this API issued"


def _key(value: Any, kind: KeyKind) -> Any:
    if value is None:
        raise InvalidArgument.field("page_token", _NOT_OURS)
    try:
        if kind == "time":
            return dt.datetime.fromisoformat(str(value))
        if kind == "uuid":
            return uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidArgument.field("page_token", _NOT_OURS) from exc
    return str(value)


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
