"""Which failures count as the database being unavailable (retried, UNAVAILABLE to callers)
and which are answers (a constraint, a bug)."""

from __future__ import annotations

import asyncpg
import pytest

from server.interceptors.outages import as_unavailable, is_database_outage


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("while storing the message") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("peer reset"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
    ],
    ids=["socket", "admin-shutdown", "closed", "protocol-mid-exchange"],
)
def test_a_lost_or_broken_connection_is_an_outage(error: BaseException) -> None:
    assert is_database_outage(error) and is_database_outage(_wrapped(error))
    assert as_unavailable(error) is not None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.InternalClientError("unexpected codec state"),
        KeyError("a bug"),
    ],
    ids=["constraint", "other-client-error", "bug"],
)
def test_answers_and_bugs_are_not_outages(error: BaseException) -> None:
    assert not is_database_outage(error) and as_unavailable(error) is None
