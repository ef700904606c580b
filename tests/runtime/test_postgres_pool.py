"""``runtime.postgres.open_pool``: no reset round trip, yet nothing of a call outlives it."""

from __future__ import annotations

import pytest

from sutazai.runtime.postgres import open_pool
from sutazai.runtime.settings import MeshSettings

pytestmark = pytest.mark.integration


async def test_a_released_connection_ends_an_open_transaction(
    mesh_settings: MeshSettings,
) -> None:
    pool = await open_pool(mesh_settings.as_principal("chat").postgres_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            backend = await connection.fetchval("SELECT pg_backend_pid()")
            # A caller that leaves without committing (a cancelled handler, say).
            await connection.execute("BEGIN")
            await connection.execute("SET LOCAL statement_timeout = 1234")
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == backend  # reused
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SHOW statement_timeout") != "1234ms"
    finally:
        await pool.close()
