"""Where the dashboard's data comes from: the part of ``sutazai.client.MeshClient`` it uses.

The app is given any object with these methods (:class:`MeshApi`): the real
:class:`sutazai.client.MeshClient` when run by ``sutazai tui``, a fake with fixed data in the
snapshot and Pilot tests. Every figure on screen comes from one of these calls. This is the one
module of the dashboard that imports the client package, so the client's small types
(connection state, errors) are re-exported from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from google.protobuf import struct_pb2

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.client import (
    CallFailed,
    ClientError,
    ConnectionState,
    MeshUnavailable,
    SessionEnded,
)
from sutazai.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb

__all__ = [
    "CallFailed",
    "ClientError",
    "ConnectionState",
    "MeshApi",
    "MeshUnavailable",
    "SessionEnded",
    "opened",
]

T = TypeVar("T")


class MeshApi(Protocol):
    """The calls the dashboard makes; same signatures as ``sutazai.client.MeshClient``."""

    @property
    def target(self) -> str:
        """``host:port`` of the edge, shown on the sign-in screen and in the banner."""
        ...

    @property
    def user(self) -> auth_pb.User | None:
        """Who is signed in, from the last sign-in or resume."""
        ...

    async def sign_in(self, username: str, password: str) -> auth_pb.User:
        """Log in, keep the tokens, and return the account."""
        ...

    async def resume(self) -> auth_pb.User | None:
        """The saved session's account, or ``None`` when there is none (or it ended)."""
        ...

    async def sign_out(self) -> None:
        """Log out (best effort) and forget the tokens."""
        ...

    def on_connection_change(
        self, callback: Callable[[ConnectionState], None]
    ) -> Callable[[], None]:
        """Call ``callback`` when the mesh is lost or regained; returns an unsubscribe."""
        ...

    def watch_status(self) -> AsyncIterator[system_pb.WatchStatusResponse]:
        """Every probe round, the latest first."""
        ...

    def watch_traffic(self) -> AsyncIterator[system_pb.WatchTrafficResponse]:
        """Every traffic sample of the edge."""
        ...

    def watch_services(self) -> AsyncIterator[system_pb.WatchServicesResponse]:
        """Every service with its instances and Envoy's endpoints, on every change."""
        ...

    async def list_logs(self) -> list[system_pb.LogInfo]:
        """The components that have a log."""
        ...

    def tail_logs(
        self,
        component: str,
        *,
        lines: int = 200,
        follow: bool = True,
        min_level: system_pb.LogLevel.ValueType = system_pb.LOG_LEVEL_UNSPECIFIED,
        contains: str = "",
    ) -> AsyncIterator[list[system_pb.LogLine]]:
        """The last ``lines`` matching lines of a component's log, then new ones."""
        ...

    async def list_users(self) -> list[auth_pb.User]:
        """Every account."""
        ...

    async def set_user_role(self, username: str, role: int) -> auth_pb.User:
        """Give an account another role."""
        ...

    async def deactivate_user(self, username: str) -> auth_pb.User:
        """Stop an account from signing in, and end its sessions."""
        ...

    async def unlock_user(self, username: str) -> int:
        """Clear an account's sign-in locks; the number cleared."""
        ...

    async def revoke_user_sessions(self, username: str) -> int:
        """End every session of an account; the number of refresh tokens revoked."""
        ...

    async def list_audit_events(
        self, *, actor: str = "", action: str = "", limit: int = 100
    ) -> list[auth_pb.AuditEvent]:
        """The newest audit events, newest first."""
        ...

    def watch_audit_events(
        self, *, actor: str = "", action: str = "", after_event_id: int = 0
    ) -> AsyncIterator[list[auth_pb.AuditEvent]]:
        """New audit events as they are written, oldest first."""
        ...

    async def list_models(self) -> inference_pb.ListModelsResponse:
        """Every model of every backend, and the default model."""
        ...

    async def list_backends(self) -> list[inference_pb.Backend]:
        """Each backend with its breaker, concurrency and last tokens/s."""
        ...

    async def load_model(self, model: str) -> inference_pb.LoadModelResponse:
        """Load and warm up a model (operators)."""
        ...

    async def unload_model(self, model: str) -> inference_pb.Model:
        """Free a loaded model (operators)."""
        ...

    async def reset_breaker(self, backend: str) -> inference_pb.Backend:
        """Close a backend's circuit breaker (operators)."""
        ...

    def chat_stream(
        self,
        message: str,
        *,
        model: str = "",
        conversation_id: str = "",
        options: inference_pb.SamplingOptions | None = None,
        system_prompt: str = "",
        no_cache: bool = False,
    ) -> AsyncIterator[chat_pb.ChatStreamResponse]:
        """One reply, streamed: ``started``, ``delta``s, ``done``; closing it cancels the call."""
        ...

    async def list_conversations(self, *, limit: int = 1_000) -> list[chat_pb.Conversation]:
        """The caller's conversations, most recent first."""
        ...

    async def get_conversation(self, conversation_id: str) -> chat_pb.GetConversationResponse:
        """One of the caller's conversations with its messages."""
        ...

    async def delete_conversation(self, conversation_id: str) -> int:
        """Delete one of the caller's conversations; the number of messages deleted."""
        ...

    async def cache_stats(self) -> chat_pb.GetCacheStatsResponse:
        """The reply cache's figures (operators)."""
        ...

    async def clear_cache(self) -> int:
        """Delete every cached reply (operators); the number deleted."""
        ...

    async def create_task(
        self,
        task_type: str,
        payload: Mapping[str, Any] | struct_pb2.Struct | None = None,
        *,
        priority: int = 0,
        required_capabilities: Sequence[str] = (),
        resources: Sequence[tasks_pb.ResourceNeed] = (),
        timeout_seconds: int = 0,
        idempotency_key: str = "",
        max_attempts: int = 0,
    ) -> tasks_pb.CreateTaskResponse:
        """Store a task and queue it for an agent; the task (and whether it is new)."""
        ...

    async def get_task(self, task_id: str) -> tasks_pb.Task:
        """One task with every attempt."""
        ...

    async def cancel_task(self, task_id: str, *, reason: str = "") -> tasks_pb.Task:
        """Cancel an unfinished task; the task, CANCELLED."""
        ...

    def watch_tasks(
        self,
        *,
        states: Collection[tasks_pb.TaskState.ValueType] = (),
        task_type: str = "",
        all_users: bool = False,
        snapshot_size: int = 50,
    ) -> AsyncIterator[tasks_pb.WatchTasksResponse]:
        """The newest matching tasks (``snapshot``), then each change."""
        ...

    async def list_dead_letters(self, *, limit: int = 100) -> list[tasks_pb.Task]:
        """The dead-lettered tasks, newest first (operators)."""
        ...

    async def requeue_dead_letter(self, task_id: str) -> tasks_pb.Task:
        """Queue a dead letter again (operators); the task."""
        ...

    def watch_agents(self) -> AsyncIterator[agents_pb.WatchAgentsResponse]:
        """Every agent instance (``snapshot``), then each change."""
        ...

    async def get_strategy(self) -> coordinator_pb.GetStrategyResponse:
        """How the coordinator chooses agents (operators)."""
        ...

    async def set_strategy(
        self, strategy: coordinator_pb.Strategy.ValueType
    ) -> coordinator_pb.Strategy.ValueType:
        """Change how the coordinator chooses agents (operators); the strategy in force."""
        ...

    async def coordinator_stats(self) -> coordinator_pb.GetStatsResponse:
        """Queue depths, in flight, throughput, failures, dead letters (operators)."""
        ...

    async def list_streams(self) -> list[coordinator_pb.StreamInfo]:
        """The JetStream streams of dispatch with their consumers (operators)."""
        ...

    # --- hardware ----------------------------------------------------------------------------

    def watch_hardware_metrics(
        self, *, interval_seconds: float = 1.0, top_processes: int = 0
    ) -> AsyncIterator[hardware_pb.HostSample]:
        """A sample of the host every ``interval_seconds`` (keep-alives are not yielded)."""
        ...

    async def storage_report(self) -> hardware_pb.GetStorageReportResponse:
        """Disk use, analysis, duplicates and largest files of every allowed root."""
        ...

    async def hardware_recommendations(self) -> hardware_pb.GetRecommendationsResponse:
        """The rules that fired on a fresh sample, each with its reason and numbers."""
        ...

    async def hardware_advice(
        self, model: str = "", question: str = ""
    ) -> hardware_pb.GetAdviceResponse:
        """The inference service's explanation of a fresh sample (model output)."""
        ...

    async def clean_files(
        self,
        path: str,
        *,
        older_than_days: int = 0,
        patterns: Sequence[str] = (),
        dry_run: bool = True,
    ) -> hardware_pb.ChangeReport:
        """Move old temporary and cache files into the quarantine (operators)."""
        ...

    async def deduplicate(self, path: str, *, dry_run: bool = True) -> hardware_pb.ChangeReport:
        """Keep the newest of each duplicate group, quarantine the others (operators)."""
        ...

    async def compress_logs(
        self, path: str, *, older_than_days: int = 0, dry_run: bool = True
    ) -> hardware_pb.ChangeReport:
        """Gzip old logs, keeping the smaller file (operators)."""
        ...

    async def rotate_logs(
        self, path: str, *, min_size_bytes: int = 0, keep: int = 0, dry_run: bool = True
    ) -> hardware_pb.ChangeReport:
        """Rotate large logs, keeping ``keep`` generations (operators)."""
        ...

    async def renice_processes(self, *, dry_run: bool = True) -> hardware_pb.ChangeReport:
        """Lower the priority of the caller's CPU hogs (operators)."""
        ...

    async def reclaim_memory(self, *, dry_run: bool = True) -> hardware_pb.ReclaimMemoryResponse:
        """Have the mesh's own processes give memory back (operators)."""
        ...

    async def list_quarantine(self, *, limit: int = 1_000) -> list[hardware_pb.QuarantinedFile]:
        """Quarantined files, newest first (operators)."""
        ...

    async def restore_quarantined(
        self, entry_ids: Sequence[str]
    ) -> list[hardware_pb.RestoreResult]:
        """Move quarantined files back where they were, byte for byte (operators)."""
        ...

    async def purge_quarantine(
        self, entry_ids: Sequence[str] = (), *, dry_run: bool = True
    ) -> hardware_pb.PurgeQuarantineResponse:
        """Delete quarantined files past their retention for good (admins)."""
        ...


@asynccontextmanager
async def opened(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Use ``stream`` and close it on the way out, so a cancelled worker ends its RPC at once.

    A bare ``async for`` leaves an async generator open when its task is cancelled; closing it
    here cancels the call instead of leaving it to the garbage collector.
    """
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
