"""The mesh's PostgreSQL roles, schemas and grants, set up by the bootstrap superuser.

Each service connects as a role of its own (``sutazai_<service>``): it can log in, owns the
schema named after its service (so it runs its own migrations there) and nothing else; it is not
a superuser and cannot create roles, databases or schemas, and has no access to another
service's schema. The audit log (schema ``audit``) belongs to a role that cannot log in
(``sutazai_audit``); the supervisor applies its migrations, every service may append rows
(``INSERT`` only: no update, delete or truncate) and only the readers (the auth service) may
select them. The mesh database belongs to the superuser, which stays the supervisor's alone.

Everything here is idempotent and runs after every start of the embedded server. A state
directory of an older release, where every service shared the role ``sutazai_app`` that owned
the database and every schema, is upgraded in place: schemas and everything in them are handed
to their new owners, then what the old role still owns goes to the superuser and the role is
dropped. So is the role of a service the catalog no longer has (``sutazai_openai``, once
``/openai/v1`` moved into the inference service): its data stays, owned by the superuser, and
nobody can log in with the old password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

import asyncpg

_SCRAM_ITERATIONS = 4096
"""PostgreSQL's own default (``scram_iterations``)."""

_ROLE_LIMITS = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, RFC 7677).

    Sending the verifier instead of the password keeps the cleartext out of the server's
    statement logs, as psql's password command does. The generated passwords are ASCII, for
    which SASLprep is the identity.
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def ensure_login_role(connection: asyncpg.Connection, role: str, password: str) -> None:
    """Create a service's role, or reset its attributes and password to the expected ones.

    ``connection`` is a superuser's. Role DDL takes no bind parameters, hence the quoting.
    """
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER ROLE" if exists else "CREATE ROLE"
    await connection.execute(
        f"{verb} {quote_identifier(role)} WITH LOGIN {_ROLE_LIMITS} "
        f"PASSWORD {_quote_literal(scram_verifier(password))}"
    )


async def ensure_owner_role(connection: asyncpg.Connection, role: str) -> None:
    """Create a role that owns objects but cannot log in (the audit log's owner)."""
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER ROLE" if exists else "CREATE ROLE"
    await connection.execute(
        f"{verb} {quote_identifier(role)} WITH NOLOGIN {_ROLE_LIMITS} PASSWORD NULL"
    )


async def ensure_database(
    connection: asyncpg.Connection, database: str, owner: str, users: Iterable[str]
) -> None:
    """Create ``database`` owned by ``owner`` (the superuser), or hand it back to ``owner``.

    Only ``users`` may connect; nobody but the owner may create schemas in it (or, through
    ``pg_database_owner``, anything in ``public``).
    """
    current = await connection.fetchval(
        "SELECT db_owner.rolname FROM pg_database "
        "JOIN pg_roles AS db_owner ON db_owner.oid = pg_database.datdba WHERE datname = $1",
        database,
    )
    db, role = quote_identifier(database), quote_identifier(owner)
    if current is None:
        await connection.execute(f"CREATE DATABASE {db} OWNER {role}")
    elif current != owner:
        await connection.execute(f"ALTER DATABASE {db} OWNER TO {role}")
    await connection.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    for user in users:
        await connection.execute(f"GRANT CONNECT ON DATABASE {db} TO {quote_identifier(user)}")


async def lock_public_schema(connection: asyncpg.Connection) -> None:
    """Nobody but the superuser creates or uses anything in ``public`` of the mesh database."""
    await connection.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")


# What the mesh's schemas hold that has an owner, and the ALTER statement that re-owns it.
# Indexes and the sequences of identity and serial columns follow their table.
_REOWN = {
    "table": """SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, $2::text)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')""",
    "sequence": """SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', n.nspname, c.relname, $2::text)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind = 'S'
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))""",
    "routine": """SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $2::text)
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = $1""",
}


async def own_schema(connection: asyncpg.Connection, schema: str, owner: str) -> None:
    """Create ``schema`` owned by ``owner``, or make ``owner`` own it and everything in it."""
    name, role = quote_identifier(schema), quote_identifier(owner)
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name} AUTHORIZATION {role}")
    await connection.execute(f"ALTER SCHEMA {name} OWNER TO {role}")
    for query in _REOWN.values():
        for statement in await connection.fetch(query, schema, owner):
            await connection.execute(statement[0])


async def grant_audit_access(
    connection: asyncpg.Connection, schema: str, writers: Iterable[str], readers: Iterable[str]
) -> None:
    """Every writer may append to ``<schema>.events``, only readers may select from it."""
    name = quote_identifier(schema)
    table = f"{name}.events"
    await connection.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
    for writer in writers:
        role = quote_identifier(writer)
        await connection.execute(f"GRANT USAGE ON SCHEMA {name} TO {role}")
        await connection.execute(f"REVOKE ALL ON {table} FROM {role}")
        await connection.execute(f"GRANT INSERT ON {table} TO {role}")
    for reader in readers:
        await connection.execute(f"GRANT SELECT ON {table} TO {quote_identifier(reader)}")


async def drop_retired_roles(
    connection: asyncpg.Connection, *, prefix: str, keep: Iterable[str], heir: str
) -> list[str]:
    """Drop every login role named ``<prefix>...`` but those in ``keep``; return their names.

    Such a role belongs to a service of an older release (or is the one role all services
    shared before each had its own). What it still owns goes to ``heir`` (the superuser), so no
    data is lost; its grants go with it. The superuser and roles that cannot log in (the audit
    log's owner) are never touched, nor is anything when ``prefix`` is empty.
    """
    if not prefix:
        return []
    retired = [
        row["rolname"]
        for row in await connection.fetch(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) AND rolcanlogin "
            "AND NOT rolsuper AND rolname <> ALL($2::text[]) ORDER BY rolname",
            prefix,
            [*keep, heir],
        )
    ]
    new = quote_identifier(heir)
    for role in retired:
        old = quote_identifier(role)
        await connection.execute(f"REASSIGN OWNED BY {old} TO {new}")
        await connection.execute(f"DROP OWNED BY {old}")
        await connection.execute(f"DROP ROLE {old}")
    return retired
