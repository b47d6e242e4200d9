"""The Graph fake's ads world: pixels (Conversions API), ad accounts and customer-list audiences,
with the rules Meta applies to them (shared contract: the Conversions API and Custom Audiences
sections of the Marketing API docs).

https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api
https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
from dataclasses import dataclass, field

from sandbox.graph import errors
from sandbox.graph.models import JSON, new_object_id

# Fixed ids so docs, tests and `make run` can name them.
PIXEL_ID = "880000000000001"
PIXEL_TOKEN = "EAAsandboxCapiSystemUserToken"
AD_ACCOUNT_ID = "act_990000000000001"
NO_TERMS_AD_ACCOUNT_ID = "act_990000000000002"

MAX_EVENTS = 1000
MAX_AUDIENCE_ROWS = 10_000
STALE_AFTER_S = 7 * 24 * 3600
ACTION_SOURCES = frozenset(
    {
        "website",
        "app",
        "email",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
HASHED_KEYS = frozenset({"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
AUDIENCE_SCHEMA_KEYS = frozenset(
    {"EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST"}
    | {"ZIP", "MADID", "COUNTRY", "EMAIL_SHA256", "PHONE_SHA256"}
)
FILE_SOURCES = frozenset(
    {"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"}
)
# Meta shows a size only past this many matched people; below it the audience is too small.
MIN_REPORTED_SIZE = 1000


@dataclass
class Pixel:
    id: str
    tokens: set[str]
    events: list[JSON] = field(default_factory=list)
    test_events: list[JSON] = field(default_factory=list)
    requests: int = 0
    # event_id -> wall-clock time of arrival, for latency measurements (`make bench`).
    arrivals: dict[str, float] = field(default_factory=dict)
    # Events per request, in order (`make bench` replays the same batches bare).
    batch_sizes: list[int] = field(default_factory=list)


@dataclass
class AdAccount:
    id: str
    name: str
    currency: str = "BRL"
    account_status: int = 1
    tos_accepted: bool = True


@dataclass
class Audience:
    id: str
    account_id: str
    name: str
    description: str
    customer_file_source: str
    members: set[str] = field(default_factory=set)
    # Each time a member was added (epoch seconds), by its first hash: Meta keeps a set, the
    # control side shows whether a client uploaded the same person twice.
    added: dict[str, list[float]] = field(default_factory=dict)
    sessions: dict[int, list[int]] = field(default_factory=dict)
    uploads: int = 0
    deleted: bool = False


def _invalid(
    message: str, user_msg: str | None = None, subcode: int | None = None
) -> errors.GraphError:
    err = errors.invalid_parameter(f"(#100) {message}", subcode)
    err.user_msg = user_msg or message
    return err


class AdsWorld:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pixels: dict[str, Pixel] = {PIXEL_ID: Pixel(PIXEL_ID, {PIXEL_TOKEN})}
        self.dead_tokens: set[str] = set()
        self.reject_event_ids: set[str] = set()
        self.accounts: dict[str, AdAccount] = {
            AD_ACCOUNT_ID: AdAccount(AD_ACCOUNT_ID, "Renove Ads"),
            NO_TERMS_AD_ACCOUNT_ID: AdAccount(
                NO_TERMS_AD_ACCOUNT_ID, "Renove Ads (sem termos)", tos_accepted=False
            ),
        }
        self.audiences: dict[str, Audience] = {}

    # -- control ---------------------------------------------------------------------------

    def new_pixel(self) -> Pixel:
        pixel = Pixel(new_object_id(self.rng, 15), {"EAA" + secrets.token_urlsafe(24)})
        self.pixels[pixel.id] = pixel
        return pixel

    # -- Conversions API -------------------------------------------------------------------

    def _pixel_for(self, pixel_id: str, token: str | None) -> Pixel:
        if not token:
            raise errors.token_required()
        if token in self.dead_tokens:
            raise errors.expired_token(
                458, "The user has not authorized application or the session was invalidated."
            )
        pixel = self.pixels.get(pixel_id)
        if pixel is None:
            raise errors.unknown_object(pixel_id)
        if token not in pixel.tokens:
            raise errors.invalid_token()
        return pixel

    def receive_events(
        self, pixel_id: str, token: str | None, data: object, test_code: str, now: int
    ) -> JSON:
        """`POST /{pixel}/events`: one invalid event rejects the whole request."""
        pixel = self._pixel_for(pixel_id, token)
        pixel.requests += 1
        if not isinstance(data, list) or not data:
            raise _invalid("The parameter data is required")
        pixel.batch_sizes.append(len(data))
        if len(data) > MAX_EVENTS:
            raise _invalid(
                f"data must contain at most {MAX_EVENTS} events",
                f"Too many events: {len(data)} (max {MAX_EVENTS})",
            )
        for index, event in enumerate(data):
            _check_event(index, event, now)
            if str(event.get("event_id", "")) in self.reject_event_ids:
                raise _invalid(
                    "Invalid parameter", f"event {index}: rejected by the pixel's data quality"
                )
        target = pixel.test_events if test_code else pixel.events
        arrived = time.time()
        for event in data:
            pixel.arrivals.setdefault(str(event.get("event_id", "")), arrived)
            target.append({**event, "test_event_code": test_code} if test_code else event)
        return {
            "events_received": len(data),
            "messages": [],
            "fbtrace_id": "A" + secrets.token_urlsafe(8),
        }

    # -- ad accounts and audiences ---------------------------------------------------------

    def ad_accounts(self) -> list[JSON]:
        return [
            {
                "id": a.id,
                "account_id": a.id.removeprefix("act_"),
                "name": a.name,
                "currency": a.currency,
                "account_status": a.account_status,
                "user_tos_accepted": {"custom_audience_tos": 1 if a.tos_accepted else 0},
            }
            for a in self.accounts.values()
        ]

    def create_audience(self, account_id: str, params: dict[str, str]) -> JSON:
        account = self.accounts.get(account_id)
        if account is None:
            raise errors.unknown_object(account_id)
        if not account.tos_accepted:
            raise errors.GraphError(
                200,
                "(#200) The Custom Audience Terms of Service must be accepted for this ad "
                "account before creating customer list audiences.",
                subcode=1870090,
            )
        if params.get("subtype") != "CUSTOM":
            raise _invalid("subtype must be CUSTOM for a customer list audience")
        if not params.get("name"):
            raise _invalid("The parameter name is required")
        source = params.get("customer_file_source", "")
        if source not in FILE_SOURCES:
            raise _invalid("customer_file_source is required for customer list audiences")
        audience = Audience(
            new_object_id(self.rng, 17),
            account_id,
            params["name"],
            params.get("description", ""),
            source,
        )
        self.audiences[audience.id] = audience
        return {"id": audience.id}

    def account_audiences(self, account_id: str, fields: list[str]) -> list[JSON]:
        """`GET /act_{id}/customaudiences`: the account's live audiences, oldest first."""
        if account_id not in self.accounts:
            raise errors.unknown_object(account_id)
        return [
            self.audience_json(a.id, fields)
            for a in self.audiences.values()
            if a.account_id == account_id and not a.deleted
        ]

    def audience(self, audience_id: str) -> Audience:
        audience = self.audiences.get(audience_id)
        if audience is None or audience.deleted:
            raise errors.unknown_object(audience_id)
        return audience

    def update_audience(self, audience_id: str, params: dict[str, str]) -> JSON:
        audience = self.audience(audience_id)
        if params.get("name"):
            audience.name = params["name"]
        if "description" in params:
            audience.description = params["description"]
        return {"success": True}

    def delete_audience(self, audience_id: str) -> JSON:
        self.audience(audience_id).deleted = True
        return {"success": True}

    def audience_json(self, audience_id: str, fields: list[str]) -> JSON:
        audience = self.audience(audience_id)
        size = len(audience.members)
        lower, upper = (size, int(size * 1.1) + 1) if size >= MIN_REPORTED_SIZE else (-1, -1)
        full: JSON = {
            "id": audience.id,
            "name": audience.name,
            "description": audience.description,
            "subtype": "CUSTOM",
            "customer_file_source": audience.customer_file_source,
            "approximate_count_lower_bound": lower,
            "approximate_count_upper_bound": upper,
            "operation_status": {"code": 200, "description": "Normal"},
            "delivery_status": {
                "code": 200 if size >= MIN_REPORTED_SIZE else 300,
                "description": "This audience is ready"
                if size >= MIN_REPORTED_SIZE
                else "This audience is too small",
            },
        }
        if not fields:
            return {"id": audience.id}
        return {k: v for k, v in full.items() if k in fields or k == "id"}

    def users(self, audience_id: str, raw_payload: str, raw_session: str, remove: bool) -> JSON:
        """`POST|DELETE /{audience}/users` with `payload` (and optional `session`) as JSON."""
        audience = self.audience(audience_id)
        payload = _json_param("payload", raw_payload)
        schema = payload.get("schema")
        data = payload.get("data")
        keys = [schema] if isinstance(schema, str) else schema
        if not isinstance(keys, list) or not keys or not set(keys) <= AUDIENCE_SCHEMA_KEYS:
            raise _invalid("Invalid schema in payload")
        if not isinstance(data, list) or not data:
            raise _invalid("The parameter payload.data is required")
        if len(data) > MAX_AUDIENCE_ROWS:
            raise _invalid(f"payload.data must hold at most {MAX_AUDIENCE_ROWS} rows")
        session_id = None
        if raw_session:
            session = _json_param("session", raw_session)
            session_id = _session(audience, session)
        invalid = 0
        for row in data:
            values = [row] if isinstance(schema, str) else row
            if not isinstance(values, list) or len(values) != len(keys):
                invalid += 1
                continue
            hashed = [str(v) for v, k in zip(values, keys, strict=True) if k != "EXTERN_ID" and v]
            if not hashed or not all(_SHA256.match(v) for v in hashed):
                invalid += 1
                continue
            if remove:
                audience.members.discard(hashed[0])
            else:
                audience.members.add(hashed[0])
                audience.added.setdefault(hashed[0], []).append(time.time())
        audience.uploads += 1
        out: JSON = {
            "audience_id": audience.id,
            "num_received": len(data),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": {},
        }
        if session_id is not None:
            out["session_id"] = str(session_id)
        return out


def _session(audience: Audience, session: JSON) -> int:
    try:
        session_id = int(session["session_id"])
        batch_seq = int(session["batch_seq"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid("session needs session_id and batch_seq") from exc
    if not isinstance(session.get("last_batch_flag"), bool):
        raise _invalid("session.last_batch_flag must be a boolean")
    seen = audience.sessions.setdefault(session_id, [])
    if batch_seq != len(seen) + 1:
        raise _invalid(f"session {session_id}: batch_seq {batch_seq} out of order")
    seen.append(batch_seq)
    return session_id


def _json_param(name: str, raw: str) -> JSON:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise _invalid(f"The parameter {name} must be JSON") from exc
    if not isinstance(value, dict):
        raise _invalid(f"The parameter {name} must be a JSON object")
    return value


def _check_event(index: int, event: object, now: int) -> None:
    where = f"event {index}"
    if not isinstance(event, dict):
        raise _invalid("Invalid parameter", f"{where}: must be an object")
    if not event.get("event_name"):
        raise _invalid("Invalid parameter", f"{where}: event_name is required")
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        raise _invalid("Invalid parameter", f"{where}: event_time must be Unix seconds")
    if event_time < now - STALE_AFTER_S:
        raise _invalid(
            "Invalid parameter",
            f"{where}: event_time is more than 7 days in the past",
            subcode=2804003,
        )
    if event_time > now + 3600:
        raise _invalid("Invalid parameter", f"{where}: event_time is in the future")
    if event.get("action_source") not in ACTION_SOURCES:
        raise _invalid(
            "Invalid parameter", f"{where}: action_source {event.get('action_source')!r} invalid"
        )
    user_data = event.get("user_data")
    if not isinstance(user_data, dict) or not user_data:
        raise _invalid("Invalid parameter", f"{where}: user_data is required")
    for key, value in user_data.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item in ("", None):
                raise _invalid("Invalid parameter", f"{where}: user_data.{key} is empty")
            if key in HASHED_KEYS and not _SHA256.match(str(item)):
                raise _invalid(
                    "Invalid parameter", f"{where}: user_data.{key} must be a SHA-256 hash"
                )
        if key == "external_id" and not all(values):
            raise _invalid("Invalid parameter", f"{where}: user_data.external_id is empty")
