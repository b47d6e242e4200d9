"""TestCapiConnection: one real event to the pixel, Meta's answer returned as the result.

The event carries Meta's `test_event_code` when given (it then shows only under Test Events),
and a recognisable test contact; it is logged as a test and, when it used the saved
configuration, recorded in `ultimo_teste`/`ultimo_teste_sucesso`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from db.models import ConversionsApiLog
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.conversions import config as capi_config
from server.conversions.errors import ConfigNotFound
from server.conversions.events import EVENT_NAMES, meta_event, summary
from server.errors import InvalidArgument
from server.providers.errors import ProviderError, ProviderRejected, ProviderUnavailable
from server.providers.meta_user_data import ContactInfo, user_data
from server.security.redaction import redact

_BY_META_NAME = {name: crm for crm, name in EVENT_NAMES.items()}
# A contact no real person has: Meta still validates and matches the event's shape.
_TEST_CONTACT = ContactInfo(email="teste.capi@renove.example", external_id="renove-capi-test")


@dataclass(frozen=True)
class TestResult:
    ok: bool
    events_received: int
    fbtrace_id: str
    event_id: str
    response_code: int
    message: str
    messages: tuple[str, ...]
    tested_at: dt.datetime


async def run_test(
    deps: Deps,
    caller: Caller,
    *,
    event_name: str,
    test_event_code: str,
    pixel_id: str,
    access_token: str,
) -> TestResult:
    crm_event = _BY_META_NAME.get(event_name or "Lead")
    if crm_event is None:
        raise InvalidArgument.field("event_name", f"one of {', '.join(EVENT_NAMES.values())}")
    if pixel_id and not pixel_id.isdigit():
        raise InvalidArgument.field("pixel_id", "the pixel (dataset) id is numeric")
    tenant = caller.tenant_id
    assert tenant is not None
    async with deps.db.unit_of_work(caller) as session:
        saved = await capi_config.load(session)
        if (not pixel_id or not access_token) and saved is None:
            raise ConfigNotFound("no CAPI configuration saved and no pixel_id/access_token given")
        use_saved = not pixel_id and not access_token
        pixel = pixel_id or (saved.pixel_id if saved else "")
        token = access_token or (capi_config.access_token(deps, saved) if saved else "")
    now = deps.clock.now()
    event_id = f"teste:{uuid.uuid4()}"
    event = meta_event(
        crm_event=crm_event, event_id=event_id, event_time=now, user_data=user_data(_TEST_CONTACT)
    )
    client = capi_config.capi_client(deps, guarded=True)
    try:
        answer = await client.send_events(pixel, token, [event], test_event_code=test_event_code)
        result = TestResult(
            True,
            answer.events_received,
            answer.fbtrace_id,
            event_id,
            200,
            "Evento de teste recebido pela Meta",
            answer.messages,
            now,
        )
    except ProviderUnavailable:
        raise  # outage or open circuit: an RPC error with RetryInfo, not a verdict on the pixel
    except ProviderError as exc:
        if not isinstance(exc, ProviderRejected) and exc.retryable:
            raise
        result = TestResult(
            False,
            0,
            exc.fbtrace_id or "",
            event_id,
            exc.status_code or 0,
            f"A Meta recusou o evento de teste: {redact(str(exc))}",
            (),
            now,
        )
    async with deps.db.unit_of_work(caller) as session:
        saved = await capi_config.load(session)
        session.add(
            ConversionsApiLog(
                organizacao_id=tenant,
                config_id=saved.id if saved else None,
                event_name=event["event_name"],
                event_time=now,
                event_id=event_id,
                entidade_tipo="teste",
                payload_resumo=summary(event, {"test_event_code": test_event_code}),
                status="sent" if result.ok else "failed",
                response_code=result.response_code,
                response_body=None if result.ok else result.message[:500],
                fbrq_event_id=result.fbtrace_id or None,
                tentativas=1,
                teste=True,
            )
        )
        if use_saved and saved is not None:
            saved.ultimo_teste = now
            saved.ultimo_teste_sucesso = result.ok
            saved.ultimo_erro = None if result.ok else result.message[:500]
    return result
