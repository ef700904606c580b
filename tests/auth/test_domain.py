"""The auth service's pure rules: validation, refresh-token verdicts, paging; revocation entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from sutazai.auth.v1 import access_pb2
from sutazai.runtime.revocations import (
    MalformedRevocationError,
    Revocation,
    Revocations,
    parse_entry,
)
from sutazai.runtime.roles import ACCOUNT_ROLES, Role
from sutazai.runtime.settings import AuthSettings
from sutazai.runtime.tokens import Identity
from sutazai.services.auth.domain import (
    PageLimits,
    RefreshState,
    Verdict,
    credential_violations,
    decode_page_token,
    email_problem,
    encode_page_token,
    hash_refresh_token,
    judge_refresh,
    new_refresh_token,
    registration_violations,
    role_problem,
    username_problem,
)
from sutazai.services.auth.passwords import Passwords, password_problems

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GOOD = "Tr0ub4dor&3x"


@pytest.mark.parametrize("name", ["ada", "Ada.Lovelace", "a_b-c.9", "x" * 32])
def test_usernames_accepted(name: str) -> None:
    assert username_problem(name) is None


@pytest.mark.parametrize("name", ["", "ab", "x" * 33, "ada lovelace", "ada@home", "adä", "ada\n"])
def test_usernames_refused(name: str) -> None:
    assert username_problem(name) == (
        "must be 3 to 32 characters of letters, digits, '.', '_' or '-'"
    )


@pytest.mark.parametrize("email", ["ada@example.org", "a.b+c@mail.example.co.uk"])
def test_emails_accepted(email: str) -> None:
    assert email_problem(email) is None


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.org", "ada@example", "a b@example.org", "a@b@c.org"]
)
def test_emails_refused(email: str) -> None:
    assert email_problem(email) is not None


def test_overlong_email_says_so() -> None:
    assert email_problem("a" * 250 + "@x.org") == "must be at most 254 characters"


def test_password_policy_explains_every_problem() -> None:
    assert password_problems(GOOD) == []
    assert password_problems("Ab1!") == ["must be at least 10 characters"]
    assert password_problems("alllowercase") == [
        "must mix at least three of: lower-case, upper-case, digits, symbols or spaces"
    ]
    assert password_problems("x" * 100 + "Ab1" + "y" * 30) == ["must be at most 128 characters"]
    assert password_problems("Ada.Lovelace-1", username="lovelace") == [
        "must not contain the username"
    ]
    # Spaces count as symbols: passphrases are welcome.
    assert password_problems("correct horse Battery") == []


def test_registration_names_each_bad_field() -> None:
    assert registration_violations("ada", "ada@example.org", GOOD) == {}
    violations = registration_violations("a", "nope", "short")
    assert set(violations) == {"username", "email", "password"}
    assert "at least 10 characters" in violations["password"]


def test_credentials_only_refuse_what_no_account_accepts() -> None:
    assert credential_violations("anyone", "x") == {}
    assert credential_violations("", "") == {"username": "required", "password": "required"}
    violations = credential_violations("a" * 33, "x" * 129)
    assert "3 to 32 characters" in violations["username"]
    assert violations["password"] == "must be at most 128 characters"


@pytest.mark.parametrize("bad", ["ada\0", "ada\ud800", "\x00", "a\udfffa"])
def test_nul_and_lone_surrogates_are_field_violations_everywhere(bad: str) -> None:
    login = credential_violations(bad, f"pw{bad}")
    assert set(login) == {"username", "password"}
    assert "NUL" in login["password"]
    registration = registration_violations(bad, f"x{bad}@example.org", f"{GOOD}{bad}")
    assert set(registration) == {"username", "email", "password"}
    assert "NUL" in registration["email"]
    assert "NUL" in registration["password"]


def test_an_account_role_is_user_operator_or_admin() -> None:
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_OPERATOR, access_pb2.ROLE_ADMIN):
        assert role_problem(role) is None
    # Unset, or a number this version does not know (proto3 enums are open).
    for bad in (access_pb2.ROLE_UNSPECIFIED, 4, -1):
        assert role_problem(bad) == "must be one of ROLE_USER, ROLE_OPERATOR, ROLE_ADMIN"


def test_role_labels_parse_back_to_their_roles_only() -> None:
    for role in ACCOUNT_ROLES:
        assert Role.from_label(role.label) is role
    for bad in ("anonymous", "ROLE_ADMIN", "Admin", ""):
        with pytest.raises(ValueError, match="expected user, operator or admin"):
            Role.from_label(bad)


def identity(user_id: str, token_id: str, issued: int) -> Identity:
    return Identity(
        user_id=user_id,
        username="n",
        role=Role.USER,
        token_id=token_id,
        expires_at=datetime.fromtimestamp(issued + 900, UTC),
        issued_at=datetime.fromtimestamp(issued, UTC),
    )


def test_revocation_entries_parse_or_are_refused() -> None:
    assert parse_entry("token.abc", b'{"exp": 5}') == Revocation("token", "abc", 5)
    assert parse_entry("account.u1", b'{"after": 7}') == Revocation("account", "u1", 7)
    for key, value in (
        ("token.abc", b"not json"),
        ("token.abc", b'{"exp": "soon"}'),
        ("token.abc", b'{"exp": true}'),
        ("account.u1", b"[1]"),
        ("account.", b'{"after": 1}'),
        ("other.x", b'{"after": 1}'),
        ("token.abc", b"\xff"),
    ):
        with pytest.raises(MalformedRevocationError):
            parse_entry(key, value)


def test_the_mirror_refuses_by_token_and_by_account_stamp_and_prunes_itself() -> None:
    now = [1_000_000.0]
    settings = AuthSettings(access_ttl_seconds=900, clock_skew_seconds=60)
    mirror = Revocations(settings, clock=lambda: now[0])
    mirror._synced.set()
    mirror._remember(Revocation("token", "t1", 1_000_500))
    mirror._remember(Revocation("account", "u2", 1_000_001))
    assert mirror.refusal(identity("u1", "t1", 999_000)) == "token revoked (signed out)"
    assert mirror.refusal(identity("u1", "t2", 999_000)) is None
    assert mirror.refusal(identity("u2", "t3", 1_000_000)) is not None
    assert mirror.refusal(identity("u2", "t4", 1_000_001)) is None
    assert mirror.size == 2

    now[0] = 1_000_001.0 + 960 + 1  # every token either entry refuses has expired
    mirror.prune()
    assert mirror.size == 0
    assert mirror.valid_after("u2") == 0


def test_refresh_tokens_are_random_and_stored_only_as_sha256() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) == 43
    digest = hash_refresh_token(token)
    assert digest == hash_refresh_token(token)
    assert len(digest) == 64
    assert token not in digest


def state(**changes: object) -> RefreshState:
    fields: dict[str, object] = {
        "rotated": False,
        "revoked": False,
        "expires_at": T0 + timedelta(days=7),
        "user_active": True,
    }
    fields.update(changes)
    return RefreshState(**fields)  # type: ignore[arg-type]


def test_refresh_verdicts() -> None:
    assert judge_refresh(state(), T0) is Verdict.ROTATE
    assert judge_refresh(state(revoked=True), T0) is Verdict.REVOKED
    assert judge_refresh(state(expires_at=T0), T0) is Verdict.EXPIRED
    assert judge_refresh(state(user_active=False), T0) is Verdict.INACTIVE


def test_reuse_wins_over_every_other_verdict() -> None:
    reused = state(rotated=True, revoked=True, expires_at=T0, user_active=False)
    assert judge_refresh(reused, T0) is Verdict.REUSED


def test_page_sizes() -> None:
    limits = PageLimits(default=50, maximum=200)
    assert limits.size(0) == 50
    assert limits.size(1) == 1
    assert limits.size(200) == 200
    assert limits.size(201) is None
    assert limits.size(-1) is None
    assert limits.problem() == "must be 1 to 200 (0 for 50)"


def test_page_tokens_round_trip_and_refuse_strangers() -> None:
    assert decode_page_token("users", encode_page_token("users", "ada")) == "ada"
    assert decode_page_token("audit", encode_page_token("audit", 42)) == 42
    assert decode_page_token("audit", encode_page_token("users", "ada")) is None
    assert decode_page_token("users", "not base64 at all!") is None
    assert decode_page_token("users", "bnVsbA") is None  # "null"
    assert decode_page_token("audit", encode_page_token("audit", True)) is None  # type: ignore[arg-type]


# Cheap parameters: these tests are about behaviour, not hashing cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def test_passwords_hash_with_argon2id_and_verify() -> None:
    passwords = Passwords(FAST)
    encoded = await passwords.hash(GOOD)
    assert encoded.startswith("$argon2id$")
    assert await passwords.verify(encoded, GOOD)
    assert not await passwords.verify(encoded, GOOD + "x")
    assert not await passwords.verify("not a hash", GOOD)
    await passwords.verify_nothing(GOOD)


def test_hashes_with_other_parameters_need_rehashing() -> None:
    passwords = Passwords(FAST)
    assert not passwords.needs_rehash(FAST.hash(GOOD))
    assert passwords.needs_rehash(PasswordHasher(time_cost=2, memory_cost=1024).hash(GOOD))
    assert passwords.needs_rehash("garbage")
