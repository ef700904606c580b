from __future__ import annotations

import re

import pytest

from sutazai.gateway.path_templates import template_regex


@pytest.mark.parametrize(
    ("template", "matches", "misses"),
    [
        ("/v1/system/status", ["/v1/system/status"], ["/v1/system/status/x", "/v1/system"]),
        (
            "/v1/users/{username}:setRole",
            ["/v1/users/alice:setRole"],
            ["/v1/users/alice", "/v1/users/a/b:setRole", "/v1/users/:setRole"],
        ),
        (
            "/v1/tasks/{task_id}",
            ["/v1/tasks/42"],
            ["/v1/tasks/42:cancel", "/v1/tasks/", "/v1/tasks/4/2"],
        ),
        (
            "/v1/{name=projects/*/things/*}",
            ["/v1/projects/p/things/t"],
            ["/v1/projects/p/things", "/v1/projects/p/other/t"],
        ),
        ("/v1/files/{path=**}", ["/v1/files/a/b/c", "/v1/files/"], ["/v1/files/a:delete"]),
        ("/v1/x.y/*:go", ["/v1/x.y/z:go"], ["/v1/xzy/z:go", "/v1/x.y/z"]),
    ],
)
def test_regex_matches_exactly_the_template(
    template: str, matches: list[str], misses: list[str]
) -> None:
    # RE2 (what Envoy runs) and Python agree on this subset; Envoy matches the whole path.
    regex = re.compile(template_regex(template))

    for path in matches:
        assert regex.fullmatch(path), path
    for path in misses:
        assert not regex.fullmatch(path), path


@pytest.mark.parametrize(
    "template",
    ["v1/x", "/v1/{a", "/v1/a}", "/v1//x", "/v1/**/x", "/v1/{p=**}/x", "/v1/{a={b}}", "/v1/a b"],
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match=r"template|segment|brace|variable|literal|'\*\*'"):
        template_regex(template)
