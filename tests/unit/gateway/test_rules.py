"""Path templates and routing, without a server."""

from __future__ import annotations

from types import ModuleType

import pytest

from webhooks_http.gateway import Router, collect_rules, parse_template
from webhooks_http.gateway.rules import HttpRule


def test_template_variables_wildcards_and_verbs() -> None:
    plain = parse_template("/api/v1/things/{thing_id}")
    assert plain.match(["api", "v1", "things", "t1"], "") == {("thing_id",): "t1"}
    assert plain.match(["api", "v1", "things", ""], "") is None

    nested = parse_template("/api/v1/things/{thing.thing_id}")
    assert nested.match(["api", "v1", "things", "t1"], "") == {("thing", "thing_id"): "t1"}

    multi = parse_template("/api/v1/{name=shelves/*/books/*}")
    assert multi.match(["api", "v1", "shelves", "s", "books", "b"], "") == {
        ("name",): "shelves/s/books/b"
    }
    assert multi.match(["api", "v1", "shelves", "s"], "") is None

    rest = parse_template("/files/{path=**}")
    assert rest.match(["files", "a", "b", "c"], "") == {("path",): "a/b/c"}

    verb = parse_template("/api/v1/conexoes/whatsapp/status:watch")
    assert verb.verb == "watch"
    assert verb.match(["api", "v1", "conexoes", "whatsapp", "status"], "watch") == {}
    assert verb.match(["api", "v1", "conexoes", "whatsapp", "status"], "") is None
    assert parse_template("/api/v1/x/{id}:retry").openapi_path == "/api/v1/x/{id}:retry"


@pytest.mark.parametrize(
    "bad", ["api/v1", "/a/{x", "/a/**/b", "/a/{x=b/{y}}", "/a/{1x}", "/a:", "/a//b"]
)
def test_bad_templates_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_template(bad)


def _rules(things_pb2: ModuleType) -> list[HttpRule]:
    return collect_rules([things_pb2.DESCRIPTOR], prefix="/api/")


def test_collects_every_binding_and_filters_by_prefix(things_pb2: ModuleType) -> None:
    rules = _rules(things_pb2)
    by_path = {(r.method, r.path_template): r for r in rules}
    assert ("GET", "/api/v1/owners/{owner_id}/things/{thing_id}") in by_path  # additional binding
    assert all(r.path_template.startswith("/api/") for r in rules)
    assert "Internal" not in {r.method_descriptor.name for r in rules}
    watch = by_path[("GET", "/api/v1/things/{thing_id}:watch")]
    assert watch.server_streaming and watch.grpc_path == "/gwtest.v1.ThingService/WatchThing"
    everything = collect_rules([things_pb2.DESCRIPTOR], prefix=None)
    assert "Ping" in {r.method_descriptor.name for r in everything}


def test_most_specific_rule_wins(things_pb2: ModuleType) -> None:
    router = Router(_rules(things_pb2))

    def rpc(method: str, path: str) -> str | None:
        found = router.match(method, path)
        return None if found is None else found.rule.method_descriptor.name

    assert rpc("GET", "/api/v1/things/default") == "GetDefaultThing"
    assert rpc("GET", "/api/v1/things/other") == "GetThing"
    assert rpc("GET", "/api/v1/things/t1:watch") == "WatchThing"
    assert rpc("POST", "/api/v1/things/t1:retry") == "RetryThing"
    assert rpc("GET", "/api/v1/things/a:b") == "GetThing"  # ':' in an id is not a verb
    assert rpc("GET", "/api/v1/things/t1:nope") == "GetThing"
    assert rpc("GET", "/api/v1/things/a%2Fb") == "GetThing"  # encoded '/' stays in the segment
    assert rpc("GET", "/api/v1/things/a/b") is None
    assert router.allowed_methods("/api/v1/things/t1") == ["DELETE", "GET", "PATCH"]


def test_ambiguous_rules_fail_at_build_time(things_pb2: ModuleType) -> None:
    rules = _rules(things_pb2)
    get = next(r for r in rules if r.path_template == "/api/v1/things/{thing_id}")
    clash = HttpRule(
        method="GET",
        path_template="/api/v1/things/{other}",
        body="",
        response_body="",
        service=get.service,
        method_descriptor=get.method_descriptor,
        server_streaming=False,
        template=parse_template("/api/v1/things/{other}"),
    )
    with pytest.raises(ValueError, match="ambiguous"):
        Router([*rules, clash])
    # Another HTTP method on the same template is not a clash.
    Router([*rules, HttpRule(**{**_fields(clash), "method": "PUT"})])


def _fields(rule: HttpRule) -> dict[str, object]:
    return {name: getattr(rule, name) for name in HttpRule.__slots__}
