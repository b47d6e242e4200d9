"""Path templates of `google.api.http` rules: parsing and matching.

Grammar (google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

A template compiles to a flat list of segments; each variable remembers the span of segments it
captures. `**` may only be the last segment, as the grammar's notes require, which keeps matching
linear and free of backtracking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SegmentKind(IntEnum):
    """Segment kinds, ordered by how specific they are (higher wins)."""

    MULTI = 0  # `**`: zero or more segments
    SINGLE = 1  # `*` or a plain `{var}`: exactly one segment
    LITERAL = 2


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    literal: str = ""


@dataclass(frozen=True, slots=True)
class Variable:
    """A path variable: the request field it fills and the segments it captures."""

    field_path: tuple[str, ...]
    start: int
    end: int  # exclusive; with a trailing `**` the capture runs to the end of the path


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A compiled template. `match` returns the variable bindings or None."""

    source: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: compared left to right, a literal beats a variable, `*` beats `**`.

        A custom verb counts as one more literal, so `/x/{id}:retry` outranks `/x/{id}`.
        """
        return (*(s.kind for s in self.segments), 3 if self.verb else 0)

    @property
    def shape(self) -> tuple[object, ...]:
        """What the template can match, without variable names: equal shapes are ambiguous."""
        return (tuple((s.kind, s.literal) for s in self.segments), self.verb)

    def match(self, segments: list[str], verb: str) -> dict[tuple[str, ...], str] | None:
        if verb != self.verb:
            return None
        has_multi = bool(self.segments) and self.segments[-1].kind is SegmentKind.MULTI
        fixed = len(self.segments) - (1 if has_multi else 0)
        if len(segments) < fixed or (not has_multi and len(segments) != fixed):
            return None
        for want, got in zip(self.segments[:fixed], segments, strict=False):
            if want.kind is SegmentKind.LITERAL and want.literal != got:
                return None
            if want.kind is SegmentKind.SINGLE and got == "":
                return None
        bound: dict[tuple[str, ...], str] = {}
        for var in self.variables:
            end = len(segments) if has_multi and var.end == len(self.segments) else var.end
            bound[var.field_path] = "/".join(segments[var.start : end])
        return bound

    @property
    def parameter_names(self) -> dict[tuple[str, ...], str]:
        """OpenAPI names of the variables: the leaf field name, or the path joined by '_'.

        Dotted names (`{thing.thing_id}`) are legal OpenAPI but break tools that format paths
        with Python's str.format or generate code, so they are flattened.
        """
        leaves = [v.field_path[-1] for v in self.variables]
        return {
            v.field_path: leaf if leaves.count(leaf) == 1 else "_".join(v.field_path)
            for v, leaf in zip(self.variables, leaves, strict=True)
        }

    @property
    def openapi_path(self) -> str:
        """The template in OpenAPI form: `/things/{thing_id}:retry`, `/{name}`."""
        names = self.parameter_names
        parts: list[str] = []
        index = 0
        by_start = {v.start: v for v in self.variables}
        while index < len(self.segments):
            var = by_start.get(index)
            if var is not None:
                parts.append("{" + names[var.field_path] + "}")
                index = max(var.end, index + 1)
                continue
            seg = self.segments[index]
            parts.append(seg.literal if seg.kind is SegmentKind.LITERAL else "*")
            index += 1
        return "/" + "/".join(parts) + (f":{self.verb}" if self.verb else "")


def parse_template(source: str) -> PathTemplate:
    """Compile a path template.

    Raises:
        ValueError: the template does not follow the grammar.
    """
    if not source.startswith("/"):
        raise ValueError(f"path template must start with '/': {source!r}")
    body, verb = _split_verb(source)
    parser = _Parser(source, body[1:])
    parser.parse_segments(top_level=True)
    if parser.pos != len(parser.text):
        raise ValueError(f"unexpected {parser.text[parser.pos]!r} in path template {source!r}")
    kinds = [s.kind for s in parser.segments]
    if SegmentKind.MULTI in kinds[:-1]:
        raise ValueError(f"'**' must be the last segment of {source!r}")
    return PathTemplate(source, tuple(parser.segments), tuple(parser.variables), verb)


def split_request_path(raw_path: str) -> tuple[list[str], str]:
    """Split a request path (still percent-encoded) into decoded segments and a custom verb.

    The verb is whatever follows the last ':' of the last segment; callers also try the whole
    segment without a verb, because ids may legitimately contain ':'.
    """
    trimmed = raw_path[1:] if raw_path.startswith("/") else raw_path
    raw_segments = trimmed.split("/")
    verb = ""
    last = raw_segments[-1]
    if ":" in last:
        last, verb = last.rsplit(":", 1)
        raw_segments[-1] = last
    # Decode per segment so an encoded '/' (%2F) stays inside its segment.
    return [unquote(s) for s in raw_segments], unquote(verb)


def _split_verb(source: str) -> tuple[str, str]:
    depth = 0
    last_slash = -1
    colon = -1
    for index, char in enumerate(source):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0 and char == "/":
            last_slash, colon = index, -1
        elif depth == 0 and char == ":" and index > last_slash:
            colon = index
    if depth != 0:
        raise ValueError(f"unbalanced braces in path template {source!r}")
    if colon < 0:
        return source, ""
    verb = source[colon + 1 :]
    if not verb or "/" in verb:
        raise ValueError(f"bad custom verb in path template {source!r}")
    return source[:colon], verb


class _Parser:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self.pos = 0
        self.segments: list[Segment] = []
        self.variables: list[Variable] = []

    def parse_segments(self, *, top_level: bool) -> None:
        while True:
            self._parse_segment(top_level=top_level)
            if self.pos < len(self.text) and self.text[self.pos] == "/":
                self.pos += 1
                continue
            return

    def _parse_segment(self, *, top_level: bool) -> None:
        rest = self.text[self.pos :]
        if rest.startswith("**"):
            self.segments.append(Segment(SegmentKind.MULTI))
            self.pos += 2
        elif rest.startswith("*"):
            self.segments.append(Segment(SegmentKind.SINGLE))
            self.pos += 1
        elif rest.startswith("{"):
            if not top_level:
                raise ValueError(f"nested variable in path template {self.source!r}")
            self._parse_variable()
        else:
            match = re.match(r"[^/{}*]+", rest)
            if match is None:
                raise ValueError(f"empty segment in path template {self.source!r}")
            self.segments.append(Segment(SegmentKind.LITERAL, match.group(0)))
            self.pos += match.end()

    def _parse_variable(self) -> None:
        close = self.text.find("}", self.pos)
        inner = self.text[self.pos + 1 : close]
        name, _, pattern = inner.partition("=")
        parts = tuple(name.split("."))
        if not all(_IDENT.fullmatch(p) for p in parts):
            raise ValueError(f"bad field path {name!r} in path template {self.source!r}")
        start = len(self.segments)
        if pattern:
            sub = _Parser(self.source, pattern)
            sub.parse_segments(top_level=False)
            if sub.pos != len(pattern):
                raise ValueError(f"bad variable pattern {pattern!r} in {self.source!r}")
            self.segments.extend(sub.segments)
        else:
            self.segments.append(Segment(SegmentKind.SINGLE))
        self.variables.append(Variable(parts, start, len(self.segments)))
        self.pos = close + 1
