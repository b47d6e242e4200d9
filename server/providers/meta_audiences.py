"""Meta Marketing API calls for customer-list Custom Audiences.

https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users/
Ad accounts (`/me/adaccounts`, with whether the Custom Audience terms were accepted), create
(`POST /act_{id}/customaudiences`, `subtype=CUSTOM`), read its size range, rename, delete,
and add or remove users (`/{audience}/users`, at most 10,000 rows per request, with Meta's
`session` when an upload spans several requests). The user token travels in the
Authorization header; errors are translated once (`translate_errors("meta_audiences")`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from server.providers.errors import ProviderRejected
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "meta_audiences"
MAX_ROWS_PER_REQUEST = 10_000
ACCOUNT_FIELDS = "id,name,currency,account_status,user_tos_accepted"
SIZE_FIELDS = "approximate_count_lower_bound,approximate_count_upper_bound,delivery_status"
AUDIENCE_FIELDS = "id,name,description"
_MAX_PAGES = 50


@dataclass(frozen=True)
class AdAccount:
    id: str  # "act_<digits>"
    name: str
    currency: str
    account_status: int
    tos_accepted: bool


@dataclass(frozen=True)
class AudienceSummary:
    id: str
    name: str
    description: str


@dataclass(frozen=True)
class AudienceSize:
    lower: int | None  # None: Meta shows no size (too small, or not matched yet)
    upper: int | None
    too_small: bool


@dataclass(frozen=True)
class UploadSession:
    """Meta's `session` for an upload in several requests; batch_seq starts at 1."""

    session_id: int
    batch_seq: int
    last_batch: bool
    estimated_total: int

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "batch_seq": self.batch_seq,
            "last_batch_flag": self.last_batch,
            "estimated_num_total": self.estimated_total,
        }


@dataclass(frozen=True)
class UploadResult:
    num_received: int
    num_invalid: int


class MetaAudiencesClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, version: str) -> None:
        self._http = http
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._host = urlsplit(base_url).netloc

    async def _call(
        self,
        method: str,
        path_or_url: str,
        token: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = path_or_url if "://" in path_or_url else f"{self._base}{path_or_url}"
        headers = {"authorization": f"Bearer {token}"}
        async with translate_errors(PROVIDER):
            response = await self._http.request(
                method, url, params=params, data=form, headers=headers
            )
            raise_for_provider_response(PROVIDER, response)
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise ProviderRejected("answer is not JSON", provider=PROVIDER) from exc
        if not isinstance(body, dict):
            raise ProviderRejected("answer is not a JSON object", provider=PROVIDER)
        return body

    async def ad_accounts(self, token: str) -> list[AdAccount]:
        body = await self._call("GET", "/me/adaccounts", token, params={"fields": ACCOUNT_FIELDS})
        accounts = []
        for _ in range(_MAX_PAGES):
            for item in body.get("data") or []:
                if isinstance(item, dict) and item.get("id"):
                    tos = item.get("user_tos_accepted") or {}
                    accounts.append(
                        AdAccount(
                            id=str(item["id"]),
                            name=str(item.get("name") or ""),
                            currency=str(item.get("currency") or ""),
                            account_status=int(item.get("account_status") or 0),
                            tos_accepted=bool(tos.get("custom_audience_tos")),
                        )
                    )
            nxt = (body.get("paging") or {}).get("next")
            if not nxt or urlsplit(nxt).netloc != self._host:
                break
            body = await self._call("GET", nxt, token)
        return accounts

    async def create(
        self, token: str, ad_account_id: str, *, name: str, description: str, source: str
    ) -> str:
        body = await self._call(
            "POST",
            f"/{ad_account_id}/customaudiences",
            token,
            form={
                "name": name,
                "subtype": "CUSTOM",
                "description": description,
                "customer_file_source": source,
            },
        )
        return str(body.get("id") or "")

    async def audiences(self, token: str, ad_account_id: str) -> list[AudienceSummary]:
        """The ad account's custom audiences (every page)."""
        body = await self._call(
            "GET",
            f"/{ad_account_id}/customaudiences",
            token,
            params={"fields": AUDIENCE_FIELDS},
        )
        found = []
        for _ in range(_MAX_PAGES):
            for item in body.get("data") or []:
                if isinstance(item, dict) and item.get("id"):
                    found.append(
                        AudienceSummary(
                            str(item["id"]),
                            str(item.get("name") or ""),
                            str(item.get("description") or ""),
                        )
                    )
            nxt = (body.get("paging") or {}).get("next")
            if not nxt or urlsplit(nxt).netloc != self._host:
                break
            body = await self._call("GET", nxt, token)
        return found

    async def rename(self, token: str, audience_id: str, *, name: str, description: str) -> None:
        await self._call(
            "POST", f"/{audience_id}", token, form={"name": name, "description": description}
        )

    async def delete(self, token: str, audience_id: str) -> None:
        await self._call("DELETE", f"/{audience_id}", token)

    async def size(self, token: str, audience_id: str) -> AudienceSize:
        body = await self._call("GET", f"/{audience_id}", token, params={"fields": SIZE_FIELDS})
        lower = body.get("approximate_count_lower_bound")
        upper = body.get("approximate_count_upper_bound")
        known = isinstance(lower, int) and lower >= 0
        delivery = body.get("delivery_status") or {}
        too_small = not known or delivery.get("code") == 300
        return AudienceSize(
            lower if known else None,
            upper if known and isinstance(upper, int) and upper >= 0 else None,
            too_small,
        )

    async def upload(
        self,
        token: str,
        audience_id: str,
        schema: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        session: UploadSession | None = None,
        remove: bool = False,
    ) -> UploadResult:
        """Adds (or removes) `rows` (hashed, in `schema` order)."""
        if not 0 < len(rows) <= MAX_ROWS_PER_REQUEST:
            raise ValueError(f"1..{MAX_ROWS_PER_REQUEST} rows per request, got {len(rows)}")
        form = {"payload": json.dumps({"schema": list(schema), "data": [list(r) for r in rows]})}
        if session is not None:
            form["session"] = json.dumps(session.to_json())
        body = await self._call(
            "DELETE" if remove else "POST", f"/{audience_id}/users", token, form=form
        )
        return UploadResult(
            int(body.get("num_received") or 0), int(body.get("num_invalid_entries") or 0)
        )
