"""The mesh's PostgreSQL application role and database, created by the bootstrap superuser.

Services connect as the application role (``settings.postgres.app_user``): it can log in and
owns the mesh database (so it creates schemas and tables for its migrations), and it is not a
superuser and cannot create roles or databases. The superuser stays for administration by the
supervisor. Everything here is idempotent and runs after every start of the embedded server: a
state directory from before the role existed gets it on its next start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import asyncpg

_SCRAM_ITERATIONS = 4096
"""PostgreSQL's own default (``scram_iterations``)."""

_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


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


async def ensure_app_role(connection: asyncpg.Connection, role: str, password: str) -> None:
    """Create the application role, or reset its attributes and password to the expected ones.

    ``connection`` is a superuser's. Role DDL takes no bind parameters, hence the quoting.
    """
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER ROLE" if exists else "CREATE ROLE"
    await connection.execute(
        f"{verb} {quote_identifier(role)} WITH {_ROLE_ATTRIBUTES} "
        f"PASSWORD {_quote_literal(scram_verifier(password))}"
    )


async def ensure_app_database(connection: asyncpg.Connection, database: str, owner: str) -> None:
    """Create ``database`` owned by ``owner``, or hand an existing one over to ``owner``.

    As the database's owner the role may create schemas in it and, through
    ``pg_database_owner``, tables in ``public``. Other non-superuser roles lose the default
    right to connect: the database is the application's.
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
