"""Inference through the mesh against raw llama-cpp-python on the same model, in one run.

The mesh side streams ``InferenceService/GenerateStream`` through Envoy (gRPC) with a bearer
token; the raw side runs ``Llama.create_chat_completion(stream=True)`` in this process on the
same GGUF file with the same thread count and context size. Both use greedy sampling
(temperature 0) on the same prompt, so both generate the same tokens, and both evaluate the whole
prompt each time; runs alternate (mesh, raw, mesh, raw, ...) so that drift on a shared machine
hits both alike.

Both sides are timed by the client the same way: time to first token from sending the request
to the first text; tokens per second from the first text to the last, over the pieces of text
received (one per token on both sides). The mesh's own server-side timings are reported too.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from sutazai.runtime.settings import EmbeddedBackendSettings
from sutazai.services.inference.embedded import shipped_model_path

PROMPT = "Explain in a few sentences why the sky is blue."


@dataclass(frozen=True, slots=True)
class Sample:
    """One generation as the client saw it."""

    time_to_first_token_ms: float
    tokens_per_second: float
    pieces: int
    server_time_to_first_token_ms: float = 0.0
    server_tokens_per_second: float = 0.0


def _rate(stamps: Sequence[float]) -> float:
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


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


async def mesh_sample(
    stub: pb_grpc.InferenceServiceStub, token: str, model: str, max_tokens: int
) -> Sample:
    """One streamed generation through the edge."""
    request = pb.GenerateStreamRequest(
        model=model,
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=PROMPT)],
        options=pb.SamplingOptions(max_tokens=max_tokens, temperature=0.0),
    )
    stamps: list[float] = []
    done: pb.GenerateDone | None = None
    started = time.perf_counter()
    async for message in stub.GenerateStream(
        request, metadata=(("authorization", f"Bearer {token}"),), timeout=300
    ):
        kind = message.WhichOneof("event")
        if kind == "delta" and message.delta.text:
            stamps.append(time.perf_counter())
        elif kind == "done":
            done = message.done
        elif kind == "error":
            raise RuntimeError(f"generation failed: {message.error.message}")
    if not stamps or done is None:
        raise RuntimeError("the stream ended without text or without done")
    return Sample(
        time_to_first_token_ms=(stamps[0] - started) * 1e3,
        tokens_per_second=_rate(stamps),
        pieces=len(stamps),
        server_time_to_first_token_ms=done.timing.time_to_first_token_ms,
        server_tokens_per_second=done.timing.tokens_per_second,
    )


def raw_sample(llama: Any, max_tokens: int) -> Sample:
    """One streamed generation with llama-cpp-python in this process.

    The context is reset first: the mesh evaluates the whole prompt of a greedy request (so it
    is reproducible, see docs/inference.md), and so must the raw side for the same work.
    """
    stamps: list[float] = []
    llama.reset()
    started = time.perf_counter()
    for chunk in llama.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
    ):
        delta = chunk["choices"][0].get("delta", {})
        if delta.get("content"):
            stamps.append(time.perf_counter())
    return Sample(
        time_to_first_token_ms=(stamps[0] - started) * 1e3,
        tokens_per_second=_rate(stamps),
        pieces=len(stamps),
    )


def _summary(samples: Sequence[Sample]) -> dict[str, object]:
    def p50(values: Sequence[float]) -> float:
        return round(statistics.median(values), 2)

    return {
        "time_to_first_token_ms_p50": p50([s.time_to_first_token_ms for s in samples]),
        "tokens_per_second_p50": p50([s.tokens_per_second for s in samples]),
        "pieces_p50": p50([s.pieces for s in samples]),
        "runs": [
            {
                k: round(v, 2) if isinstance(v, float) else v
                for k, v in asdict(s).items()
                if not k.startswith("server_") or v
            }
            for s in samples
        ],
    }


async def compare(
    edge: str,
    settings: EmbeddedBackendSettings,
    *,
    model: str,
    model_path: Path | None,
    runs: int,
    max_tokens: int,
) -> dict[str, object]:
    """Alternate ``runs`` mesh and raw generations (after one warm-up each); summarise both."""
    # Imported here: it loads the native library, which only this benchmark needs.
    from llama_cpp import Llama

    path = model_path or settings.model_path or shipped_model_path()
    llama = Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads,
        n_batch=settings.n_batch,
        verbose=False,
    )
    token = await sign_in(edge)
    mesh: list[Sample] = []
    raw: list[Sample] = []
    async with grpc.aio.insecure_channel(edge) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        await mesh_sample(stub, token, model, max_tokens)  # warm-up: connection, model pages
        raw_sample(llama, max_tokens)
        for _ in range(runs):
            mesh.append(await mesh_sample(stub, token, model, max_tokens))
            raw.append(await asyncio.to_thread(raw_sample, llama, max_tokens))
    llama.close()
    mesh_summary, raw_summary = _summary(mesh), _summary(raw)
    mesh_tps = float(mesh_summary["tokens_per_second_p50"])  # type: ignore[arg-type]
    raw_tps = float(raw_summary["tokens_per_second_p50"])  # type: ignore[arg-type]
    mesh_ttft = float(mesh_summary["time_to_first_token_ms_p50"])  # type: ignore[arg-type]
    raw_ttft = float(raw_summary["time_to_first_token_ms_p50"])  # type: ignore[arg-type]
    return {
        "model": model,
        "model_file": path.name,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "n_threads": settings.n_threads,
        "n_ctx": settings.n_ctx,
        "mesh_grpc_via_envoy": mesh_summary,
        "raw_llama_cpp_python": raw_summary,
        "tokens_per_second_ratio": round(mesh_tps / raw_tps, 3) if raw_tps else None,
        "added_time_to_first_token_ms": round(mesh_ttft - raw_ttft, 2),
        # The path alone (client -> Envoy -> service -> first delta back): the client's time to
        # first token minus the one the service measured, free of the prompt's evaluation noise.
        "mesh_path_time_to_first_token_ms_p50": round(
            statistics.median(
                s.time_to_first_token_ms - s.server_time_to_first_token_ms for s in mesh
            ),
            2,
        ),
    }
