"""``google.api.http`` path templates as RE2 regular expressions for Envoy route matches.

Envoy's ``jwt_authn`` runs before the transcoder, so it sees the REST path
(``/v1/users/alice:setRole``), not the method it maps to. To exempt a public method's REST
path from the token requirement, its template must become a regex that Envoy matches against
the whole path (query string excluded).

Grammar (https://github.com/googleapis/googleapis/blob/master/google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

Wildcards never match ``:``. A public template therefore cannot match a path carrying a custom
verb (``/v1/things/x:delete``), which may map to another, protected method: such paths fall
through to the rules that require a token. Failing closed is the right side to err on.
"""

from __future__ import annotations

import re
from typing import Final

_SEGMENT: Final = "[^/:]+"
"""``*`` and a bare ``{var}``: one path segment."""
_SEGMENTS: Final = "[^:]*"
"""``**``: any number of segments (only valid last)."""
_LITERAL: Final = re.compile(r"[A-Za-z0-9._~\-]+")
"""What this module accepts as a literal segment or verb: URL-unreserved characters."""
_FIELD_PATH: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def template_regex(template: str) -> str:
    """An RE2 regex matching exactly the paths ``template`` matches.

    Raises:
        ValueError: ``template`` is not a valid path template.
    """
    if not template.startswith("/"):
        raise ValueError(f"path template {template!r} must start with '/'")
    path, verb = _split_verb(template)
    regex = "/" + _segments(path[1:], template, nested=False)
    if verb is not None:
        regex += ":" + _literal(verb, template)
    return regex


def _split_verb(template: str) -> tuple[str, str | None]:
    """Split off ``:verb``: a ``:`` after the last ``/``, outside any ``{...}``."""
    depth = 0
    for index in range(len(template) - 1, -1, -1):
        char = template[index]
        if char == "}":
            depth += 1
        elif char == "{":
            depth -= 1
        elif char == "/" and depth == 0:
            return template, None
        elif char == ":" and depth == 0:
            return template[:index], template[index + 1 :]
    return template, None


def _segments(text: str, template: str, *, nested: bool) -> str:
    parts = _split_segments(text, template)
    out: list[str] = []
    for position, segment in enumerate(parts):
        last = position == len(parts) - 1
        if segment == "**":
            if not last:
                raise ValueError(f"'**' must be the last segment in {template!r}")
            out.append(_SEGMENTS)
        elif segment == "*":
            out.append(_SEGMENT)
        elif segment.startswith("{"):
            if nested:
                raise ValueError(f"nested variable in {template!r}")
            if not last and segment.endswith("**}"):
                raise ValueError(f"'**' must be the last segment in {template!r}")
            out.append(_variable(segment, template))
        else:
            out.append(_literal(segment, template))
    return "/".join(out)


def _split_segments(text: str, template: str) -> list[str]:
    """Split on ``/`` outside braces (a variable may hold several segments)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced braces in {template!r}")
        if char == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(f"unbalanced braces in {template!r}")
    parts.append(current)
    if any(not part for part in parts):
        raise ValueError(f"empty segment in {template!r}")
    return parts


def _variable(segment: str, template: str) -> str:
    if not segment.endswith("}"):
        raise ValueError(f"bad variable {segment!r} in {template!r}")
    field, has_pattern, pattern = segment[1:-1].partition("=")
    if not _FIELD_PATH.fullmatch(field):
        raise ValueError(f"bad field path {field!r} in {template!r}")
    if not has_pattern:
        return _SEGMENT
    return _segments(pattern, template, nested=True)


def _literal(text: str, template: str) -> str:
    if not _LITERAL.fullmatch(text):
        raise ValueError(f"unsupported literal {text!r} in {template!r}")
    # Of the accepted characters only '.' means something to RE2 outside a class.
    return text.replace(".", r"\.")
