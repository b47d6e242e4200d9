"""Reading `google.api.http` rules from descriptors, and routing requests to them.

`collect_rules` walks every service method of the given files (additional bindings included),
checks each rule against the request/response messages once, at build time, and `Router` picks
the most specific rule for a request. Two rules that match exactly the same requests are a
contract bug, so `Router` refuses to build rather than pick one silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor, MethodDescriptor
from renove.conexoes.v1 import options_pb2

from .template import PathTemplate, parse_template, split_request_path

_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class HttpRule:
    """One HTTP binding of one RPC."""

    method: str  # upper case: GET, POST, ...
    path_template: str
    body: str  # "" (no body), "*" (whole request) or a top-level request field name
    response_body: str  # "" (whole response) or a top-level response field name
    service: str  # full name, e.g. "renove.conexoes.v1.WhatsAppService"
    method_descriptor: MethodDescriptor
    server_streaming: bool
    template: PathTemplate
    success_status: int = 200  # the method's (renove.conexoes.v1.success_status), or 200

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method_descriptor.name}"

    @property
    def is_redirect(self) -> bool:
        """A browser redirect the sidecar serves itself (OAuth callbacks), not JSON."""
        return 300 <= self.success_status < 400


@dataclass(frozen=True, slots=True)
class RouteMatch:
    rule: HttpRule
    path_params: dict[tuple[str, ...], str]


def collect_rules(files: Iterable[FileDescriptor], *, prefix: str | None = None) -> list[HttpRule]:
    """Every annotated binding of every RPC in `files`, in declaration order.

    Args:
        files: file descriptors (generated modules' `DESCRIPTOR`, or from a pool).
        prefix: keep only rules whose path template starts with it (None keeps all).

    Raises:
        ValueError: a rule names a field that does not exist or cannot be bound, or annotates
            a client-streaming RPC.
    """
    rules: list[HttpRule] = []
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                for http in _bindings(_http_option(method)):
                    rule = _to_rule(http, service.full_name, method)
                    if prefix is None or rule.path_template.startswith(prefix):
                        rules.append(rule)
    return rules


def _method_options(method: MethodDescriptor) -> descriptor_pb2.MethodOptions:
    # Re-parse the options against the default pool's MethodOptions: descriptors that come from
    # another pool carry the extensions as unknown fields otherwise.
    return descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())


def _http_option(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = _method_options(method)
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def success_status(method: MethodDescriptor) -> int:
    """The HTTP status of a successful call: the method's option, or 200."""
    options = _method_options(method)
    if not options.HasExtension(options_pb2.success_status):
        return 200
    return int(options.Extensions[options_pb2.success_status])


def _bindings(http: http_pb2.HttpRule | None) -> list[http_pb2.HttpRule]:
    if http is None:
        return []
    return [http, *http.additional_bindings]


def _to_rule(http: http_pb2.HttpRule, service: str, method: MethodDescriptor) -> HttpRule:
    pattern = http.WhichOneof("pattern")
    if pattern is None:
        raise ValueError(f"{method.full_name}: google.api.http rule without a pattern")
    if pattern == "custom":
        verb, path = http.custom.kind.upper(), http.custom.path
    else:
        verb, path = pattern.upper(), getattr(http, pattern)
    template = parse_template(path)
    where = f"{method.full_name} ({verb} {path})"
    if method.client_streaming:
        raise ValueError(f"{where}: client-streaming RPCs cannot be served over HTTP/JSON here")
    for var in template.variables:
        field = resolve_field_path(method.input_type, var.field_path)
        if field is None or is_repeated(field) or field.type == FieldDescriptor.TYPE_MESSAGE:
            raise ValueError(f"{where}: path variable {'.'.join(var.field_path)} is not a scalar")
    if http.body not in ("", "*") and method.input_type.fields_by_name.get(http.body) is None:
        raise ValueError(f"{where}: body field {http.body!r} not in {method.input_type.name}")
    status = success_status(method)
    # 204 would drop the response body; a redirect is what a browser GET follows.
    with_body = 200 <= status < 300 and status != 204
    if not with_body and not (300 <= status < 400 and verb == "GET"):
        raise ValueError(f"{where}: success_status {status}: not a 2xx with a body or a GET 3xx")
    response = http.response_body
    if response and method.output_type.fields_by_name.get(response) is None:
        raise ValueError(f"{where}: response_body {response!r} not in {method.output_type.name}")
    return HttpRule(
        method=verb,
        path_template=path,
        body=http.body,
        response_body=response,
        service=service,
        method_descriptor=method,
        server_streaming=method.server_streaming,
        template=template,
        success_status=status,
    )


def resolve_field_path(message: Descriptor, path: Sequence[str]) -> FieldDescriptor | None:
    """The field a dotted path names, accepting proto names and json names at each step."""
    field: FieldDescriptor | None = None
    current: Descriptor | None = message
    for name in path:
        if current is None:
            return None
        field = find_field(current, name)
        if field is None:
            return None
        current = field.message_type
    return field


def find_field(message: Descriptor, name: str) -> FieldDescriptor | None:
    field = message.fields_by_name.get(name)
    if field is not None:
        return field
    return next((f for f in message.fields if f.json_name == name), None)


def field_behaviors(field: FieldDescriptor) -> list[int]:
    """The field's `google.api.field_behavior` values (re-parsed, as for the http option)."""
    options = descriptor_pb2.FieldOptions.FromString(field.GetOptions().SerializeToString())
    return list(options.Extensions[field_behavior_pb2.field_behavior])


def is_repeated(field: FieldDescriptor) -> bool:
    # `label` is gone in protobuf 7; `is_repeated` arrived in 5.29. Support both.
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED)


class Router:
    """Finds the rule for (HTTP method, path); literal segments beat variables.

    Raises:
        ValueError: at construction, when two rules of one HTTP method match the same paths.
    """

    def __init__(self, rules: Iterable[HttpRule]) -> None:
        self._rules = sorted(rules, key=lambda r: r.template.specificity, reverse=True)
        seen: dict[tuple[str, object], HttpRule] = {}
        for rule in self._rules:
            key = (rule.method, rule.template.shape)
            other = seen.get(key)
            if other is not None:
                raise ValueError(
                    f"ambiguous HTTP rules: {rule.method} {rule.path_template} "
                    f"({rule.method_descriptor.full_name}) and {other.path_template} "
                    f"({other.method_descriptor.full_name})"
                )
            seen[key] = rule

    @property
    def rules(self) -> list[HttpRule]:
        return list(self._rules)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The best rule for the request, or None; see `allowed_methods` to tell 404 from 405."""
        for rule, params in self._candidates(raw_path):
            if rule.method == method:
                return RouteMatch(rule, params)
        return None

    def allowed_methods(self, raw_path: str) -> list[str]:
        return sorted({rule.method for rule, _ in self._candidates(raw_path)})

    def _candidates(self, raw_path: str) -> Iterable[tuple[HttpRule, dict[tuple[str, ...], str]]]:
        segments, verb = split_request_path(raw_path)
        # Without the verb split too: an id such as "a:b" in the last segment is not a verb.
        whole, _ = split_request_path(raw_path.replace(":", "%3A")) if verb else (segments, "")
        for rule in self._rules:  # most specific first
            params = rule.template.match(segments, verb)
            if params is None and verb:
                params = rule.template.match(whole, "")
            if params is not None:
                yield rule, params
