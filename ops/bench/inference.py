"""Inference and chat through the mesh against llama.cpp without it, on one model, in one run.

Four ways to stream the same generation, side by side:

- ``raw_llama_cpp_python``: ``Llama.create_chat_completion(stream=True)`` in this process;
- ``llama_cpp_server``: a ``python -m llama_cpp.server`` process the benchmark starts on a free
  port (``/v1/chat/completions``, SSE);
- ``mesh_grpc``: ``InferenceService/GenerateStream`` through Envoy (gRPC, bearer token);
- ``mesh_openai``: ``POST /openai/v1/chat/completions`` with ``stream: true`` through Envoy (SSE).

All four run the same GGUF file with the mesh's embedded settings (threads, context, batch),
greedy decoding (temperature 0) on the same messages, so they generate the same tokens, and all
evaluate the whole prompt: the raw side resets its context; the mesh resets for greedy requests
(docs/inference.md); ``llama_cpp.server`` keeps its context between requests and reuses any
common prefix, so every round opens with a system message of its own (a round number), which
leaves only the chat template's first tokens in common with the previous request. Rounds run
the four sides one after the other, starting with a different side each round, so that drift on
a shared machine hits every side alike. Each side is timed by the client the same way: time to
first token from sending the request to the first text; tokens per second from the first text to
the last, over the pieces of text received (one per token on every side).

Then the chat service (``sutazai.chat.v1.ChatService``) through Envoy: the latency of a cached
reply (the same request repeated after one call that fills the cache, over REST and gRPC, beside
the same clients' floors: see :func:`cached_latency`) and the throughput of streamed replies
(``ChatStream``, uncached, each a prompt of its own) at several concurrencies: replies completed
per second and generated tokens per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import h11
import httpx
from grpc_health.v1 import health_pb2 as health_pb
from grpc_health.v1 import health_pb2_grpc as health_grpc

from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.chat.v1 import chat_service_pb2_grpc as chat_grpc
from sutazai.inference.v1 import inference_service_pb2 as pb
from sutazai.inference.v1 import inference_service_pb2_grpc as pb_grpc
from sutazai.ops.bench.accounts import sign_in
from sutazai.ops.bench.errors import BenchError
from sutazai.ops.bench.figures import percentile
from sutazai.runtime.settings import EmbeddedBackendSettings
from sutazai.services.inference.embedded import shipped_model_path
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.system.v1 import system_service_pb2_grpc as system_grpc

PROMPT = "Explain in a few sentences why the sky is blue."
CHAT_PROMPT = "Name one colour of the rainbow and say why you like it."
SERVER_MODEL = "bench-llama-server"
"""The name the benchmark's ``llama_cpp.server`` serves the GGUF under."""
SERVER_START_SECONDS = 120.0
CALL_TIMEOUT = 300.0
WARM_UP_CALLS = 10
"""Calls of each kind before the cached reply's timing starts (connections, caches)."""
SIDES = ("raw_llama_cpp_python", "llama_cpp_server", "mesh_grpc", "mesh_openai")

Messages = list[dict[str, str]]


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


def _sample(started: float, stamps: Sequence[float], side: str) -> Sample:
    if not stamps:
        raise BenchError(f"{side}: the stream ended without text")
    return Sample(
        time_to_first_token_ms=(stamps[0] - started) * 1e3,
        tokens_per_second=_rate(stamps),
        pieces=len(stamps),
    )


def round_messages(round_number: int) -> Messages:
    """The messages of one round: the same for every side, different from the last round's."""
    return [
        {"role": "system", "content": f"Round {round_number}. You are a helpful assistant."},
        {"role": "user", "content": PROMPT},
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The four sides -----------------------------------------------------------------------------------

_ROLES = {"system": pb.MESSAGE_ROLE_SYSTEM, "user": pb.MESSAGE_ROLE_USER}


async def mesh_sample(
    stub: pb_grpc.InferenceServiceStub,
    token: str,
    model: str,
    messages: Messages,
    max_tokens: int,
) -> Sample:
    """One streamed generation through the edge over gRPC."""
    request = pb.GenerateStreamRequest(
        model=model,
        messages=[pb.Message(role=_ROLES[m["role"]], content=m["content"]) for m in messages],
        options=pb.SamplingOptions(max_tokens=max_tokens, temperature=0.0),
    )
    stamps: list[float] = []
    done: pb.GenerateDone | None = None
    started = time.perf_counter()
    async for message in stub.GenerateStream(
        request, metadata=(("authorization", f"Bearer {token}"),), timeout=CALL_TIMEOUT
    ):
        kind = message.WhichOneof("event")
        if kind == "delta" and message.delta.text:
            stamps.append(time.perf_counter())
        elif kind == "done":
            done = message.done
        elif kind == "error":
            raise BenchError(f"mesh_grpc: generation failed: {message.error.message}")
    if done is None:
        raise BenchError("mesh_grpc: the stream ended without done")
    sample = _sample(started, stamps, "mesh_grpc")
    return Sample(
        time_to_first_token_ms=sample.time_to_first_token_ms,
        tokens_per_second=sample.tokens_per_second,
        pieces=sample.pieces,
        server_time_to_first_token_ms=done.timing.time_to_first_token_ms,
        server_tokens_per_second=done.timing.tokens_per_second,
    )


async def sse_sample(
    peer: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: dict[str, Any],
    side: str,
) -> Sample:
    """One streamed OpenAI-style chat completion (``llama_cpp.server`` or ``/openai/v1``).

    Read with :class:`LeanHttp` on a connection of its own (``peer`` is ``host:port``), as
    curl would: httpx's streaming lines cost this process several times the CPU per chunk, and
    on two cores that CPU is taken from the generation being timed (the cached-reply figures
    below make the same choice). A new connection per sample, since a server may close an idle
    keep-alive one (uvicorn does after 5 s) while the other sides run.
    """
    stamps: list[float] = []
    finished = False
    status = 0
    pending = b""
    started = time.perf_counter()
    head = [*headers, ("content-type", "application/json")]
    async with LeanHttp.connect(peer) as client:
        async for piece in client.stream("POST", target, head, json.dumps(body).encode()):
            if isinstance(piece, int):
                status = piece
                continue
            if status != 200:
                raise BenchError(f"{side}: HTTP {status}: {piece!r}")
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue  # blank separators and keep-alive comments
                data = line.removeprefix(b"data:").strip()
                if data == b"[DONE]":
                    finished = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    raise BenchError(f"{side}: generation failed: {chunk['error']}")
                choices = chunk.get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    stamps.append(time.perf_counter())
    if not finished:
        raise BenchError(f"{side}: the stream ended without [DONE] (HTTP {status})")
    return _sample(started, stamps, side)


def raw_sample(llama: Any, messages: Messages, max_tokens: int) -> Sample:
    """One streamed generation with llama-cpp-python in this process.

    The context is reset first: the mesh evaluates the whole prompt of a greedy request (so it
    is reproducible, see docs/inference.md), and so must the raw side for the same work.
    """
    stamps: list[float] = []
    llama.reset()
    started = time.perf_counter()
    for chunk in llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        if chunk["choices"][0].get("delta", {}).get("content"):
            stamps.append(time.perf_counter())
    return _sample(started, stamps, "raw_llama_cpp_python")


@contextlib.contextmanager
def llama_server(path: Path, settings: EmbeddedBackendSettings) -> Iterator[str]:
    """A ``llama_cpp.server`` process on a free port with the mesh's settings; its base URL.

    Stopped (SIGTERM, then SIGKILL) when the block ends, whatever happens.
    """
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        SERVER_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(settings.n_ctx),
        "--n_threads",
        str(settings.n_threads),
        "--n_threads_batch",
        str(settings.n_threads),
        "--n_batch",
        str(settings.n_batch),
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        except BaseException:
            if process.poll() is not None:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_for_server(client: httpx.AsyncClient, base_url: str) -> None:
    """Wait until the server lists its model (it loads the model before it listens)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(f"{base_url}/models", timeout=5)).status_code == 200:
                return
        await asyncio.sleep(0.2)  # polling a process we cannot be notified by
    raise BenchError(f"llama_cpp.server did not answer at {base_url} within its start time")


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


def versus_raw(samples: dict[str, list[Sample]]) -> dict[str, dict[str, float | None]]:
    """Each side against raw llama-cpp-python: of the p50s, and paired round by round.

    ``tokens_per_second_ratio`` divides the side's p50 by raw's. The paired figures compare
    each round with the raw generation it ran beside (same messages, minutes apart at most)
    and take the median: the machine's drift between rounds, often larger than the gap being
    measured on a shared VM, cancels out of them.
    """
    raw = samples[SIDES[0]]

    def median(values: Sequence[float], digits: int) -> float | None:
        return round(statistics.median(values), digits) if values else None

    raw_tps = statistics.median(s.tokens_per_second for s in raw)
    raw_ttft = statistics.median(s.time_to_first_token_ms for s in raw)
    compared: dict[str, dict[str, float | None]] = {}
    for side in SIDES[1:]:
        mine = samples[side]
        pairs = list(zip(mine, raw, strict=True))
        compared[side] = {
            "tokens_per_second_ratio": (
                round(statistics.median(s.tokens_per_second for s in mine) / raw_tps, 3)
                if raw_tps
                else None
            ),
            "tokens_per_second_ratio_paired_median": median(
                [
                    s.tokens_per_second / r.tokens_per_second
                    for s, r in pairs
                    if r.tokens_per_second
                ],
                3,
            ),
            "added_time_to_first_token_ms": round(
                statistics.median(s.time_to_first_token_ms for s in mine) - raw_ttft, 2
            ),
            "added_time_to_first_token_ms_paired_median": median(
                [s.time_to_first_token_ms - r.time_to_first_token_ms for s, r in pairs], 2
            ),
        }
    return compared


async def side_by_side(
    edge: str,
    token: str,
    settings: EmbeddedBackendSettings,
    *,
    model: str,
    path: Path,
    runs: int,
    max_tokens: int,
) -> dict[str, list[Sample]]:
    """``runs`` rounds (after a warm-up round) of the four sides; their samples by side."""
    # Imported here: it loads the native library, which only this benchmark needs.
    from llama_cpp import Llama

    llama = Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads,
        n_batch=settings.n_batch,
        verbose=False,
    )
    samples: dict[str, list[Sample]] = {side: [] for side in SIDES}
    raw_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-llama")
    try:
        with llama_server(path, settings) as server_url:
            async with (
                grpc.aio.insecure_channel(edge) as channel,
                httpx.AsyncClient(timeout=CALL_TIMEOUT) as server_client,
            ):
                await wait_for_server(server_client, server_url)
                stub = pb_grpc.InferenceServiceStub(channel)

                def body(name: str, messages: Messages) -> dict[str, Any]:
                    return {
                        "model": name,
                        "messages": messages,
                        "max_tokens": max_tokens,
                        "temperature": 0.0,
                        "stream": True,
                    }

                sides: dict[str, Callable[[Messages], Awaitable[Sample]]] = {
                    # Always the same thread, as the mesh's replica: libgomp throttles every
                    # OpenMP team once a second thread has run llama.cpp (a shared pool's).
                    "raw_llama_cpp_python": lambda m: asyncio.get_running_loop().run_in_executor(
                        raw_thread, raw_sample, llama, m, max_tokens
                    ),
                    "llama_cpp_server": lambda m: sse_sample(
                        urlsplit(server_url).netloc,
                        "/v1/chat/completions",
                        (),
                        # The server's own default repeat penalty is 1.1; llama-cpp-python's
                        # (raw, and so the mesh's) is 1.0: same sampling, same tokens.
                        {**body(SERVER_MODEL, m), "repeat_penalty": 1.0},
                        "llama_cpp_server",
                    ),
                    "mesh_grpc": lambda m: mesh_sample(stub, token, model, m, max_tokens),
                    "mesh_openai": lambda m: sse_sample(
                        edge,
                        "/openai/v1/chat/completions",
                        (("authorization", f"Bearer {token}"),),
                        body(model, m),
                        "mesh_openai",
                    ),
                }
                # Round 0 warms up every side (connections, model pages) and is not kept.
                for round_number in range(runs + 1):
                    messages = round_messages(round_number)
                    order = SIDES[round_number % 4 :] + SIDES[: round_number % 4]
                    for side in order:
                        sample = await sides[side](messages)
                        if round_number:
                            samples[side].append(sample)
    finally:
        raw_thread.shutdown()
        llama.close()
    return samples


# The chat service -----------------------------------------------------------------------------


class LeanHttp:
    """Keep-alive HTTP/1.1 requests driven by ``h11`` (the protocol library under httpx).

    What a lean client (curl, Go's net/http) costs: httpx's own machinery (its transports, URL
    and header models, hooks) takes several times the CPU of the call's HTTP/1.1 framing, so
    timing through it measures the client as much as the server. One connection at a time,
    opened again when the edge ends one (``connection: close``).
    """

    def __init__(self, edge: str) -> None:
        """Requests to ``edge`` (``host:port``); connect on the first one."""
        self._edge = edge
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._connection = h11.Connection(h11.CLIENT)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, edge: str) -> AsyncIterator[LeanHttp]:
        """A client of ``edge`` whose connection is closed on exit."""
        client = cls(edge)
        try:
            yield client
        finally:
            await client.close()

    async def close(self) -> None:
        """Close the connection, if one is open."""
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request; its status and whole body."""
        status = 0
        parts: list[bytes] = []
        async for piece in self.stream(method, target, headers, body):
            if isinstance(piece, int):
                status = piece
            else:
                parts.append(piece)
        return status, b"".join(parts)

    async def stream(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes = b""
    ) -> AsyncIterator[int | bytes]:
        """Send one request; yield its status, then each piece of its body as it arrives."""
        if self._streams is None:
            host, _, port = self._edge.rpartition(":")
            self._streams = await asyncio.open_connection(host, int(port))
            self._connection = h11.Connection(h11.CLIENT)
        reader, writer = self._streams
        connection = self._connection
        head = [("host", self._edge), *headers]
        if body or method == "POST":
            head.append(("content-length", str(len(body))))
        data = connection.send(h11.Request(method=method, target=target, headers=head)) or b""
        if body:
            data += connection.send(h11.Data(data=body)) or b""
        writer.write(data + (connection.send(h11.EndOfMessage()) or b""))
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                yield event.status_code
            elif isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                await self.close()
                raise BenchError(f"{method} {target}: the peer closed the connection")
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        else:  # the peer ends this connection: the next request opens another
            await self.close()


@dataclass(slots=True)
class _Timings:
    """Wall and client CPU milliseconds of each call of one kind."""

    wall: list[float]
    cpu: list[float]

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(self.wall), 2),
            "p99_ms": round(percentile(self.wall, 0.99), 2),
            "mean_ms": round(statistics.fmean(self.wall), 2),
            "min_ms": round(min(self.wall), 2),
            "client_cpu_ms_per_call": round(statistics.fmean(self.cpu), 3),
        }


async def cached_latency(
    edge: str, token: str, *, model: str, calls: int, max_tokens: int
) -> dict[str, Any]:
    """A cached chat reply through Envoy, over REST and gRPC, beside the same clients' floors.

    ``POST /v1/chat`` once fills the cache; then, ``calls`` times each, round-robin (so that a
    shared machine's drift hits every kind alike): the same request over REST (``POST
    /v1/chat``, JSON, on one keep-alive connection of :class:`LeanHttp`, and again through
    httpx) and over gRPC (``ChatService/Chat``), each answered from the cache; a signed-in
    ``SystemService/GetStatus`` over REST and gRPC (the same route through Envoy and a
    service's guard, with the answer already in memory); and ``grpc.health.v1.Health/Check``
    through Envoy (the edge and the gateway: no service, no guard). Every call is timed by the
    wall clock and by this process's CPU time, which shows what the client itself costs.
    """
    message = f"{CHAT_PROMPT} [{secrets.token_hex(4)}]"
    document = {
        "message": message,
        "model": model,
        "options": {"max_tokens": max_tokens, "temperature": 0},
    }
    body = json.dumps(document).encode()
    request = chat_pb.ChatRequest(
        message=message,
        model=model,
        options=pb.SamplingOptions(max_tokens=max_tokens, temperature=0.0),
    )
    metadata = (("authorization", f"Bearer {token}"),)
    json_headers = (*metadata, ("content-type", "application/json"))
    async with (
        LeanHttp.connect(edge) as http,
        httpx.AsyncClient(
            base_url=f"http://{edge}", headers=dict(metadata), timeout=CALL_TIMEOUT
        ) as client,
        grpc.aio.insecure_channel(edge) as channel,
    ):
        chat = chat_grpc.ChatServiceStub(channel)
        system = system_grpc.SystemServiceStub(channel)
        health = health_grpc.HealthStub(channel)
        status, first = await http.request("POST", "/v1/chat", json_headers, body)
        if status != 200:
            raise BenchError(f"POST /v1/chat: HTTP {status}: {first[:500]!r}")
        if json.loads(first).get("cached"):
            raise BenchError("the first call was already cached")

        def check_cached(status: int, reply: bytes) -> None:
            if status != 200 or json.loads(reply).get("cached") is not True:
                raise BenchError(f"a repeated call was not a cached reply: {reply[:500]!r}")

        async def rest_chat() -> None:
            check_cached(*await http.request("POST", "/v1/chat", json_headers, body))

        async def rest_chat_httpx() -> None:
            reply = await client.post("/v1/chat", content=body, headers=dict(json_headers))
            check_cached(reply.status_code, reply.content)

        async def grpc_chat() -> None:
            reply = await chat.Chat(request, metadata=metadata, timeout=CALL_TIMEOUT)
            if not reply.cached:
                raise BenchError("a repeated gRPC call was not a cached reply")

        async def rest_status() -> None:
            status, reply = await http.request("GET", "/v1/system/status", metadata)
            if status != 200:
                raise BenchError(f"GET /v1/system/status: HTTP {status}: {reply[:500]!r}")

        async def grpc_status() -> None:
            await system.GetStatus(
                system_pb.GetStatusRequest(), metadata=metadata, timeout=CALL_TIMEOUT
            )

        async def grpc_health() -> None:
            await health.Check(health_pb.HealthCheckRequest(), timeout=CALL_TIMEOUT)

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "rest": rest_chat,
            "rest_httpx": rest_chat_httpx,
            "grpc": grpc_chat,
            "rest_get_status": rest_status,
            "grpc_get_status": grpc_status,
            "grpc_health_check": grpc_health,
        }
        timings = {name: _Timings([], []) for name in kinds}
        for index in range(WARM_UP_CALLS + calls):
            for name, call in kinds.items():
                cpu, wall = time.process_time(), time.perf_counter()
                await call()
                if index >= WARM_UP_CALLS:
                    timings[name].wall.append((time.perf_counter() - wall) * 1e3)
                    timings[name].cpu.append((time.process_time() - cpu) * 1e3)
    summaries = {name: timing.summary() for name, timing in timings.items()}
    return {
        "calls": calls,
        "rest": summaries["rest"],
        "rest_httpx": summaries["rest_httpx"],
        "grpc": summaries["grpc"],
        "floors": {name: summaries[name] for name in list(kinds)[3:]},
    }


async def chat_throughput(
    edge: str, token: str, *, model: str, concurrency: int, replies: int, max_tokens: int
) -> dict[str, object]:
    """``replies`` uncached streamed chats, ``concurrency`` at a time; completed per second."""
    metadata = (("authorization", f"Bearer {token}"),)
    completed = tokens = 0
    errors: dict[str, int] = {}
    next_index = 0
    async with grpc.aio.insecure_channel(edge) as channel:
        stub = chat_grpc.ChatServiceStub(channel)

        async def one(index: int) -> None:
            nonlocal completed, tokens
            request = chat_pb.ChatStreamRequest(
                message=f"{CHAT_PROMPT} (#{index} {secrets.token_hex(3)})",
                model=model,
                options=pb.SamplingOptions(max_tokens=max_tokens, temperature=0.0),
                no_cache=True,
            )
            try:
                async for message in stub.ChatStream(
                    request, metadata=metadata, timeout=CALL_TIMEOUT
                ):
                    kind = message.WhichOneof("event")
                    if kind == "done":
                        completed += 1
                        tokens += message.done.usage.completion_tokens
                    elif kind == "error":
                        code = grpc.StatusCode(message.error.code) if message.error.code else None
                        name = code.name if code else "UNKNOWN"
                        errors[name] = errors.get(name, 0) + 1
                        return
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        async def worker() -> None:
            nonlocal next_index
            while next_index < replies:
                index = next_index
                next_index += 1
                await one(index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "replies": replies,
        "completed": completed,
        "errors": errors,
        "seconds": round(seconds, 2),
        "replies_per_second": round(completed / seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
        "completion_tokens_mean": round(tokens / completed, 1) if completed else 0,
    }


# The whole run ------------------------------------------------------------------------------------


async def compare(
    edge: str,
    settings: EmbeddedBackendSettings,
    *,
    model: str,
    model_path: Path | None,
    runs: int,
    max_tokens: int,
    cached_calls: int = 200,
    concurrencies: Sequence[int] = (1, 8, 32),
    chat_max_tokens: int = 32,
    chat_replies: int = 16,
) -> dict[str, object]:
    """The four sides side by side, then the chat service's cached latency and throughput."""
    path = model_path or settings.model_path or shipped_model_path()
    token = await sign_in(edge)
    samples = await side_by_side(
        edge, token, settings, model=model, path=path, runs=runs, max_tokens=max_tokens
    )
    summaries = {side: _summary(samples[side]) for side in SIDES}
    cached = await cached_latency(
        edge, token, model=model, calls=cached_calls, max_tokens=chat_max_tokens
    )
    throughput = [
        await chat_throughput(
            edge,
            token,
            model=model,
            concurrency=concurrency,
            # Enough replies that every caller runs at least twice.
            replies=max(chat_replies, 2 * concurrency),
            max_tokens=chat_max_tokens,
        )
        for concurrency in concurrencies
    ]

    return {
        "model": model,
        "model_file": path.name,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "n_threads": settings.n_threads,
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "rounds": runs,
        **summaries,
        "cached_chat_via_envoy": cached,
        "chat_throughput": throughput,
        "summary": {
            "versus_raw": versus_raw(samples),
            # The path alone (client -> Envoy -> service -> first delta back): the client's time
            # to first token minus the one the service measured, free of the prompt's
            # evaluation noise.
            "mesh_grpc_path_time_to_first_token_ms_p50": round(
                statistics.median(
                    s.time_to_first_token_ms - s.server_time_to_first_token_ms
                    for s in samples["mesh_grpc"]
                ),
                2,
            ),
            "cached_chat_p50_ms": cached["rest"]["p50_ms"],
            "cached_chat_grpc_p50_ms": cached["grpc"]["p50_ms"],
            "grpc_health_check_p50_ms": cached["floors"]["grpc_health_check"]["p50_ms"],
            "chat_replies_per_second": {
                str(t["concurrency"]): t["replies_per_second"] for t in throughput
            },
            "chat_tokens_per_second": {
                str(t["concurrency"]): t["tokens_per_second"] for t in throughput
            },
        },
    }
