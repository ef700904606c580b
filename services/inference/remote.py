"""What the HTTP backends (Ollama, OpenAI-compatible) share: the client, and failure mapping.

A remote server's failure (refused connection, timeout, 5xx, 429, a reply that is not what the
API documents) is :class:`BackendUnavailableError`, which counts against the backend's breaker
and reaches the caller as UNAVAILABLE; never a success carrying an error text (the original's
defect, ORIGINAL_SYSTEM §2.5). A 404 for the model is :class:`ModelNotFoundError`, other 4xx
the request's fault (:class:`OptionRejectedError`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from sutazai.runtime.settings import RemoteBackendSettings
from sutazai.services.inference.errors import (
    BackendUnavailableError,
    ModelNotFoundError,
    OptionRejectedError,
)

MAX_ERROR_BODY = 2048
"""Bytes of an error reply read to explain it (the rest is not worth buffering)."""
MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest streamed line accepted from a backend (a vector of 8k floats fits easily)."""


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment (what ListBackends shows)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def http_client(
    settings: RemoteBackendSettings,
    *,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    keep_userinfo: bool = True,
) -> httpx.AsyncClient:
    """A client for one backend: its timeouts, no redirects, no proxy from the environment.

    The base URL drops any query and fragment (paths are appended to it); user and password in
    it become HTTP basic auth unless ``keep_userinfo`` is false (a bearer key is sent instead).
    """
    if settings.url is None:
        raise ValueError("the backend has no URL")
    parts = urlsplit(settings.url)
    netloc = parts.netloc if keep_userinfo else parts.netloc.rpartition("@")[2]
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", ""))
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.read_timeout_seconds,
        write=settings.read_timeout_seconds,
        pool=settings.read_timeout_seconds,
    )
    return httpx.AsyncClient(
        base_url=base,
        timeout=timeout,
        headers=dict(headers or {}),
        follow_redirects=False,
        # A local model server must not be reached through whatever proxy the environment
        # names (and the prompt must not travel through it).
        trust_env=False,
        transport=transport,
        limits=httpx.Limits(
            max_connections=settings.max_concurrency + 2,
            max_keepalive_connections=settings.max_concurrency + 2,
        ),
    )


@contextlib.contextmanager
def transport_errors(backend: str) -> Iterator[None]:
    """Turn httpx's transport failures into :class:`BackendUnavailableError`."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendUnavailableError(backend, f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise BackendUnavailableError(backend, f"unreachable ({type(exc).__name__})") from exc


async def check_status(backend: str, model: str, response: httpx.Response) -> None:
    """Raise the error an unsuccessful reply stands for (the body is read, bounded)."""
    if response.is_success:
        return
    detail = await _error_text(response)
    status = response.status_code
    if status == httpx.codes.NOT_FOUND and model:
        raise ModelNotFoundError(model)
    if status in (httpx.codes.BAD_REQUEST, httpx.codes.UNPROCESSABLE_ENTITY):
        raise OptionRejectedError({"request": f"{backend} refused it: {detail}"})
    raise BackendUnavailableError(backend, f"HTTP {status}: {detail}")


async def _error_text(response: httpx.Response) -> str:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    body = body[:MAX_ERROR_BODY]
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            error = parsed.get("error")
            if isinstance(error, dict):
                error = error.get("message")
            if isinstance(error, str):
                return error[:300]
    return text[:300] or response.reason_phrase


def json_object(backend: str, text: str | bytes) -> dict[str, Any]:
    """Parse one JSON object of a reply.

    Raises:
        BackendUnavailableError: it is not a JSON object.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BackendUnavailableError(backend, "the reply is not JSON") from exc
    if not isinstance(value, dict):
        raise BackendUnavailableError(backend, "the reply is not a JSON object")
    return value


async def lines(backend: str, response: httpx.Response) -> AsyncIterator[str]:
    """The non-empty lines of a streamed reply, each bounded in size."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        if len(buffer) > MAX_LINE_BYTES:
            raise BackendUnavailableError(backend, "a streamed line is too long")
        *complete, buffer = buffer.split("\n")
        for line in complete:
            if line.strip():
                yield line.rstrip("\r")
    if buffer.strip():
        yield buffer.rstrip("\r")


def integer(value: object) -> int:
    """A non-negative count from a reply, 0 when absent or malformed."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
