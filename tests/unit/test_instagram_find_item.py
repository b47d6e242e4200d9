"""Finding a delivery's messaging item by the event id the intake stored: plain, or tagged with
the tenant when an account had several holders."""

from __future__ import annotations

import json
import uuid

from server.ingress.routes import instagram_events
from server.instagram.inbound import find_item

BODY = {
    "object": "instagram",
    "entry": [
        {
            "id": "17841400000000001",
            "time": 1733500000000,
            "messaging": [
                {
                    "sender": {"id": "990001"},
                    "recipient": {"id": "17841400000000001"},
                    "timestamp": 1733500000000,
                    "message": {"mid": "aWdfZAG1faW-first", "text": "oi"},
                },
                {
                    "sender": {"id": "990002"},
                    "recipient": {"id": "17841400000000001"},
                    "timestamp": 1733500000001,
                    "message": {"mid": "aWdfZAG1faW-second", "text": "ola"},
                },
            ],
        }
    ],
}
RAW = json.dumps(BODY).encode()


def test_the_plain_and_the_tenant_tagged_id_find_the_same_item() -> None:
    second = instagram_events(BODY, RAW)[1].event_id
    plain = find_item(RAW, second)
    tagged = find_item(RAW, f"{second}@{uuid.uuid4()}")
    assert plain is not None and tagged == plain
    assert plain[1]["message"]["text"] == "ola"


def test_an_unknown_id_or_a_tag_that_is_no_tenant_finds_nothing() -> None:
    second = instagram_events(BODY, RAW)[1].event_id
    assert find_item(RAW, "instagram:nada") is None
    assert find_item(RAW, f"{second}@not-a-tenant") is None
