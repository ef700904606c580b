"""Signing a benchmark in: a throw-away account registered through the edge."""

from __future__ import annotations

import secrets

import grpc

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc


async def sign_in(edge: str) -> str:
    """Register a throw-away user through ``edge`` and return its access token."""
    username = f"bench-{secrets.token_hex(4)}"
    password = f"Bench-{secrets.token_urlsafe(12)}"
    async with grpc.aio.insecure_channel(edge) as channel:
        stub = auth_grpc.AuthServiceStub(channel)
        await stub.Register(
            auth_pb.RegisterRequest(
                username=username, email=f"{username}@bench.invalid", password=password
            ),
            timeout=10,
        )
        reply = await stub.Login(auth_pb.LoginRequest(username=username, password=password))
    return str(reply.access_token)
