"""``MeshClient``: the mesh's RPCs as typed async methods, through Envoy.

Everything returned is the generated protobuf message. Unary calls carry a deadline
(``call_timeout``; longer for generation and model loading) and the session's access token;
``UNAVAILABLE`` raises :class:`MeshUnavailable` (and tells the connection listeners when the
edge, not a service, said so), ``UNAUTHENTICATED`` renews the session once and retries before
raising :class:`SessionEnded`, any other status raises :class:`CallFailed`. Watch streams
follow :func:`sutazai.client.streams.follow`; reply streams (``chat_stream``,
``generate_stream``) are one call each, never reopened. Tasks, agents, the coordinator and
resources: see ``docs/client.md`` ("Tasks and agents").
"""

from __future__ import annotations

import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.agents.v1.agent_service_pb2_grpc import AgentServiceStub
from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from sutazai.chat.v1 import chat_service_pb2 as chat_pb
from sutazai.chat.v1.chat_service_pb2_grpc import ChatServiceStub
from sutazai.client.channel import edge_channel, edge_target
from sutazai.client.errors import ClientError, MeshUnavailable, SessionEnded
from sutazai.client.session import Session, bearer
from sutazai.client.statuses import from_rpc_status, service_answered, translate
from sutazai.client.streams import ConnectionState, ConnectionWatch, ReconnectPolicy, follow
from sutazai.client.tokens import FileTokenStore, TokenStore
from sutazai.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from sutazai.coordinator.v1.coordinator_service_pb2_grpc import CoordinatorServiceStub
from sutazai.hardware.v1 import hardware_service_pb2 as hardware_pb
from sutazai.hardware.v1.hardware_service_pb2_grpc import HardwareServiceStub
from sutazai.inference.v1 import inference_service_pb2 as inference_pb
from sutazai.inference.v1.inference_service_pb2_grpc import InferenceServiceStub
from sutazai.resources.v1 import resource_service_pb2 as resources_pb
from sutazai.resources.v1.resource_service_pb2_grpc import ResourceServiceStub
from sutazai.runtime.settings import MeshSettings
from sutazai.system.v1 import system_service_pb2 as system_pb
from sutazai.system.v1.system_service_pb2_grpc import SystemServiceStub
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub

R = TypeVar("R")
E = TypeVar("E", chat_pb.ChatStreamResponse, inference_pb.GenerateStreamResponse)
Metadata = tuple[tuple[str, str], ...]

_USER_PAGE = 200
"""ListUsers' largest page."""
_AUDIT_PAGE = 500
"""ListAuditEvents' largest page."""
_MAX_PAGES = 1_000
"""Pages read by one listing at most: a server that never stops paging cannot hang us."""
_MAX_AUDIT_EVENTS = 10_000
"""Most audit events one :meth:`MeshClient.list_audit_events` returns."""
_CONVERSATION_PAGE = 100
"""ListConversations' largest page."""
_MAX_CONVERSATIONS = 10_000
"""Most conversations one :meth:`MeshClient.list_conversations` returns."""
_TASK_PAGE = 100
"""ListTasks' and ListDeadLetters' largest page."""
_MAX_TASKS = 10_000
"""Most tasks one :meth:`MeshClient.list_tasks` or :meth:`MeshClient.list_dead_letters`
returns."""
FINAL_STATES = frozenset(
    {
        tasks_pb.TASK_STATE_SUCCEEDED,
        tasks_pb.TASK_STATE_FAILED,
        tasks_pb.TASK_STATE_CANCELLED,
    }
)
"""The states a task never leaves; :meth:`MeshClient.watch_task` ends after one."""
_QUARANTINE_PAGE = 1_000
"""ListQuarantine's largest page."""
_MAX_QUARANTINE = 100_000
"""Most entries one :meth:`MeshClient.list_quarantine` returns."""
STORAGE_TIMEOUT = 660.0
"""Deadline of the storage calls (analysis, duplicates, large files, the report and the
changes), in seconds: a walk may be asked for up to ``hardware.max_seconds`` (600 s by default)
and hashing comes on top. Through Envoy a unary call is cut at 15 s whatever the deadline; the
service stops its walks before the deadline it is told and answers ``truncated``, and longer
work runs as a task (docs/hardware.md)."""
GENERATION_TIMEOUT = 300.0
"""Deadline of a unary generation (``chat``, ``batch_chat``) and of model loading, in seconds:
a model answers in seconds, but a large one on a slow backend, or 50 batched prompts queued
behind each other, take minutes. The edge ends a stream idle for 5 minutes as well."""


class MeshClient:
    """Async client of the mesh through Envoy (gRPC; TLS when ``settings.edge_tls``)."""

    def __init__(
        self,
        settings: MeshSettings,
        *,
        tokens: TokenStore | None = None,
        call_timeout: float = 10.0,
        generation_timeout: float = GENERATION_TIMEOUT,
        storage_timeout: float = STORAGE_TIMEOUT,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        """A client of the edge of ``settings``; no connection is made until the first call.

        Args:
            settings: where the edge is (``host``, ``envoy.port``, TLS).
            tokens: where the session is kept; default ``FileTokenStore(settings.state_dir)``,
                shared with ``sutazai login``.
            call_timeout: deadline of each unary call, in seconds.
            generation_timeout: deadline of calls that wait for a model (``chat``,
                ``batch_chat``, ``load_model``, ``unload_model``, ``hardware_advice``), in
                seconds.
            storage_timeout: deadline of the hardware service's storage calls (walks, hashing
                and the changes they make), in seconds.
            reconnect: how streams back off (default :class:`ReconnectPolicy`).

        """
        self._settings = settings
        self._target = edge_target(settings)
        # Made on first use: a grpc.aio channel belongs to the event loop it is created in,
        # and a client may be built before that loop runs (e.g. in an App's constructor).
        self._channel: grpc.aio.Channel | None = None
        self._call_timeout = call_timeout
        self._generation_timeout = generation_timeout
        self._storage_timeout = storage_timeout
        self._reconnect = reconnect or ReconnectPolicy()
        self._connection = ConnectionWatch()
        self._session = Session(
            tokens if tokens is not None else FileTokenStore(settings.state_dir),
            lambda: self._auth,
            target=self._target,
            call_timeout=call_timeout,
        )
        self._user: auth_pb.User | None = None

    async def __aenter__(self) -> Self:
        """The client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the channel (:meth:`aclose`)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel; open streams end with it."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    @property
    def _auth(self) -> AuthServiceStub:
        return AuthServiceStub(self._open_channel())

    @property
    def _system(self) -> SystemServiceStub:
        return SystemServiceStub(self._open_channel())

    @property
    def _inference(self) -> InferenceServiceStub:
        return InferenceServiceStub(self._open_channel())

    @property
    def _chat(self) -> ChatServiceStub:
        return ChatServiceStub(self._open_channel())

    @property
    def _tasks(self) -> TaskServiceStub:
        return TaskServiceStub(self._open_channel())

    @property
    def _agents(self) -> AgentServiceStub:
        return AgentServiceStub(self._open_channel())

    @property
    def _coordinator(self) -> CoordinatorServiceStub:
        return CoordinatorServiceStub(self._open_channel())

    @property
    def _resources(self) -> ResourceServiceStub:
        return ResourceServiceStub(self._open_channel())

    @property
    def _hardware(self) -> HardwareServiceStub:
        return HardwareServiceStub(self._open_channel())

    def _open_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = edge_channel(self._settings)
        return self._channel

    @property
    def target(self) -> str:
        """``host:port`` of the edge."""
        return self._target

    # --- session ---------------------------------------------------------------------------

    async def sign_in(self, username: str, password: str) -> auth_pb.User:
        """``Login``, save the tokens, then ``GetMe``: who is now signed in.

        Raises:
            CallFailed: refused credentials (``UNAUTHENTICATED``), invalid input, or a lockout.
            MeshUnavailable: the edge or the auth service is unreachable.

        """
        await self._guarded(self._session.sign_in(username, password))
        return await self.me()

    async def resume(self) -> auth_pb.User | None:
        """The saved session's user (refreshing it if expired), or ``None`` if none or ended.

        A token file that cannot be trusted (:class:`TokenFileError`) counts as ended: signing
        in again replaces it with a private one.

        Raises:
            MeshUnavailable: the mesh is unreachable (the saved session is kept).
            CallFailed: another refusal.

        """
        try:
            if self._session.saved() is None:
                return None
            return await self.me()
        except SessionEnded:
            self._user = None
            return None

    async def sign_out(self) -> None:
        """``Logout`` (best effort) and clear the store."""
        await self._session.sign_out()
        self._user = None

    async def me(self) -> auth_pb.User:
        """``GetMe``: the signed-in account (also kept as :attr:`user`)."""
        reply: auth_pb.GetMeResponse = await self._unary(self._auth.GetMe, auth_pb.GetMeRequest())
        self._user = reply.user
        return reply.user

    @property
    def user(self) -> auth_pb.User | None:
        """Who is signed in, from the last :meth:`sign_in`, :meth:`resume` or :meth:`me`."""
        return self._user

    # --- connection state ------------------------------------------------------------------

    def on_connection_change(
        self, callback: Callable[[ConnectionState], None]
    ) -> Callable[[], None]:
        """Call ``callback`` when the client loses or regains the mesh; returns unsubscribe.

        Called from the event loop's thread, in the task that noticed the change: keep it
        quick and do not raise.
        """
        return self._connection.subscribe(callback)

    # --- system ----------------------------------------------------------------------------

    async def get_status(self) -> system_pb.GetStatusResponse:
        """``GetStatus``: every component when signed in, the overall state only otherwise."""
        return await self._unary(
            self._system.GetStatus, system_pb.GetStatusRequest(), signed_in=False
        )

    def watch_status(self) -> AsyncIterator[system_pb.WatchStatusResponse]:
        """``WatchStatus``, followed: the latest probe round, then every round."""
        return self._follow(
            lambda metadata: self._system.WatchStatus(
                system_pb.WatchStatusRequest(), metadata=metadata
            ),
            signed_in=False,
        )

    def watch_traffic(self) -> AsyncIterator[system_pb.WatchTrafficResponse]:
        """``WatchTraffic``, followed: one sample per window."""
        return self._follow(
            lambda metadata: self._system.WatchTraffic(
                system_pb.WatchTrafficRequest(), metadata=metadata
            )
        )

    def watch_services(self) -> AsyncIterator[system_pb.WatchServicesResponse]:
        """``WatchServices``, followed: services, instances and Envoy's view of each."""
        return self._follow(
            lambda metadata: self._system.WatchServices(
                system_pb.WatchServicesRequest(), metadata=metadata
            )
        )

    async def list_logs(self) -> list[system_pb.LogInfo]:
        """``ListLogs``: every component that has a log (operators)."""
        reply: system_pb.ListLogsResponse = await self._unary(
            self._system.ListLogs, system_pb.ListLogsRequest()
        )
        return list(reply.logs)

    def tail_logs(
        self,
        component: str,
        *,
        lines: int = 200,
        follow: bool = True,
        min_level: system_pb.LogLevel.ValueType = system_pb.LOG_LEVEL_UNSPECIFIED,
        contains: str = "",
    ) -> AsyncIterator[list[system_pb.LogLine]]:
        """``TailLogs``: the last ``lines`` matching lines, then (``follow``) every new one.

        Keep-alive (empty) messages are not yielded. Following, a reconnect asks for no old
        lines again (``lines=0``), so nothing is shown twice. Not following, the iterator ends
        with the stream and does not reconnect.
        """
        reconnected = False

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, system_pb.TailLogsResponse]:
            nonlocal reconnected
            request = system_pb.TailLogsRequest(
                component=component,
                lines=0 if reconnected else lines,
                follow=follow,
                min_level=min_level,
                contains=contains,
            )
            reconnected = True
            return self._system.TailLogs(request, metadata=metadata)

        if not follow:
            return self._lines(self._once(start))

        return self._lines(self._follow(start))

    # --- identity (admins) -----------------------------------------------------------------

    async def list_users(self) -> list[auth_pb.User]:
        """``ListUsers``, every page, by username."""
        users: list[auth_pb.User] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply = await self._unary(
                self._auth.ListUsers,
                auth_pb.ListUsersRequest(page_size=_USER_PAGE, page_token=page_token),
            )
            users.extend(reply.users)
            if not reply.next_page_token or reply.next_page_token == page_token:
                break
            page_token = reply.next_page_token
        return users

    async def set_user_role(self, username: str, role: int) -> auth_pb.User:
        """``SetUserRole``: give ``username`` the role ``role`` (an ``access_pb2.Role`` value)."""
        reply: auth_pb.SetUserRoleResponse = await self._unary(
            self._auth.SetUserRole,
            auth_pb.SetUserRoleRequest(username=username, role=role),  # type: ignore[arg-type]
        )
        return reply.user

    async def deactivate_user(self, username: str) -> auth_pb.User:
        """``DeactivateUser``: disable the account and end all its sessions."""
        reply: auth_pb.DeactivateUserResponse = await self._unary(
            self._auth.DeactivateUser, auth_pb.DeactivateUserRequest(username=username)
        )
        return reply.user

    async def unlock_user(self, username: str) -> int:
        """``UnlockUser``: the number of sign-in locks cleared."""
        reply = await self._unary(
            self._auth.UnlockUser, auth_pb.UnlockUserRequest(username=username)
        )
        return int(reply.locks_cleared)

    async def revoke_user_sessions(self, username: str) -> int:
        """``RevokeUserSessions``: the number of refresh tokens revoked."""
        reply = await self._unary(
            self._auth.RevokeUserSessions, auth_pb.RevokeUserSessionsRequest(username=username)
        )
        return int(reply.refresh_tokens_revoked)

    async def list_audit_events(
        self, *, actor: str = "", action: str = "", limit: int = 100
    ) -> list[auth_pb.AuditEvent]:
        """``ListAuditEvents``: up to ``limit`` (1 to 10,000) events, newest first."""
        wanted = max(1, min(limit, _MAX_AUDIT_EVENTS))
        events: list[auth_pb.AuditEvent] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply = await self._unary(
                self._auth.ListAuditEvents,
                auth_pb.ListAuditEventsRequest(
                    page_size=min(_AUDIT_PAGE, wanted - len(events)),
                    page_token=page_token,
                    actor=actor,
                    action=action,
                ),
            )
            events.extend(reply.events)
            if (
                len(events) >= wanted
                or not reply.next_page_token
                or reply.next_page_token == page_token
            ):
                break
            page_token = reply.next_page_token
        return events[:wanted]

    def watch_audit_events(
        self, *, actor: str = "", action: str = "", after_event_id: int = 0
    ) -> AsyncIterator[list[auth_pb.AuditEvent]]:
        """``WatchAuditEvents``, followed: new events, oldest first, in batches.

        Keep-alives are not yielded; a reconnect resumes after the last event seen, so no
        event is missed or repeated.
        """
        last_seen = after_event_id

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, auth_pb.WatchAuditEventsResponse]:
            request = auth_pb.WatchAuditEventsRequest(
                after_event_id=last_seen, actor=actor, action=action
            )
            return self._auth.WatchAuditEvents(request, metadata=metadata)

        async def batches() -> AsyncIterator[list[auth_pb.AuditEvent]]:
            nonlocal last_seen
            stream: AsyncGenerator[auth_pb.WatchAuditEventsResponse] = self._follow(start)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    if not message.events:
                        continue
                    last_seen = max(last_seen, max(e.event_id for e in message.events))
                    yield list(message.events)

        return batches()

    # --- inference -------------------------------------------------------------------------

    async def list_models(self) -> inference_pb.ListModelsResponse:
        """``ListModels``: every model of every backend, and the default model."""
        reply: inference_pb.ListModelsResponse = await self._unary(
            self._inference.ListModels, inference_pb.ListModelsRequest()
        )
        return reply

    async def list_backends(self) -> list[inference_pb.Backend]:
        """``ListBackends``: each backend with its circuit breaker and its concurrency."""
        reply: inference_pb.ListBackendsResponse = await self._unary(
            self._inference.ListBackends, inference_pb.ListBackendsRequest()
        )
        return list(reply.backends)

    async def load_model(self, model: str) -> inference_pb.LoadModelResponse:
        """``LoadModel`` (operators): load and warm up ``model``; a no-op when loaded."""
        reply: inference_pb.LoadModelResponse = await self._unary(
            self._inference.LoadModel,
            inference_pb.LoadModelRequest(model=model),
            deadline=self._generation_timeout,
        )
        return reply

    async def unload_model(self, model: str) -> inference_pb.Model:
        """``UnloadModel`` (operators): free ``model``'s memory; the model, now unloaded."""
        reply: inference_pb.UnloadModelResponse = await self._unary(
            self._inference.UnloadModel,
            inference_pb.UnloadModelRequest(model=model),
            deadline=self._generation_timeout,
        )
        return reply.model

    async def reset_breaker(self, backend: str) -> inference_pb.Backend:
        """``ResetBreaker`` (operators): close ``backend``'s breaker; the backend after it."""
        reply: inference_pb.ResetBreakerResponse = await self._unary(
            self._inference.ResetBreaker, inference_pb.ResetBreakerRequest(backend=backend)
        )
        return reply.backend

    def generate_stream(
        self,
        messages: Sequence[inference_pb.Message],
        *,
        model: str = "",
        options: inference_pb.SamplingOptions | None = None,
    ) -> AsyncIterator[inference_pb.GenerateStreamResponse]:
        """``GenerateStream``: the ``delta`` events, then ``done``; one call, not reopened.

        A terminal ``error`` event is not yielded: the iterator raises its status instead (as
        :class:`CallFailed` or :class:`MeshUnavailable`). Closing the iterator cancels the call,
        which stops generation at once.
        """
        request = inference_pb.GenerateStreamRequest(
            model=model, messages=list(messages), options=options
        )
        return self._reply_stream(
            lambda metadata: self._inference.GenerateStream(request, metadata=metadata)
        )

    # --- chat ------------------------------------------------------------------------------

    async def chat(
        self,
        message: str,
        *,
        model: str = "",
        conversation_id: str = "",
        options: inference_pb.SamplingOptions | None = None,
        system_prompt: str = "",
        no_cache: bool = False,
    ) -> chat_pb.ChatResponse:
        """``Chat``: send ``message`` (in a new conversation, or ``conversation_id``'s).

        Args:
            message: the user's message (1 to 32,768 characters).
            model: empty for the conversation's model, or the default model.
            conversation_id: a conversation of the caller's to continue; empty for a new one.
            options: sampling options; unset ones take the model's defaults.
            system_prompt: instructions for the model, for a new conversation only.
            no_cache: neither read nor write the reply cache.

        """
        request = chat_pb.ChatRequest(
            message=message,
            model=model,
            conversation_id=conversation_id,
            options=options,
            system_prompt=system_prompt,
            no_cache=no_cache,
        )
        reply: chat_pb.ChatResponse = await self._unary(
            self._chat.Chat, request, deadline=self._generation_timeout
        )
        return reply

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
        """``ChatStream``: ``started``, the reply's ``delta`` events, then ``done``.

        Arguments as :meth:`chat`. A reply stream is one call and is never reopened (that
        would generate, and store, the reply again). A terminal ``error`` event is not
        yielded: the iterator raises its status instead. Closing the iterator (``aclose``, or
        cancelling the task reading it) cancels the call: generation stops and the partial
        reply is stored.
        """
        request = chat_pb.ChatStreamRequest(
            message=message,
            model=model,
            conversation_id=conversation_id,
            options=options,
            system_prompt=system_prompt,
            no_cache=no_cache,
        )
        return self._reply_stream(
            lambda metadata: self._chat.ChatStream(request, metadata=metadata)
        )

    async def batch_chat(
        self,
        prompts: Sequence[str],
        *,
        model: str = "",
        options: inference_pb.SamplingOptions | None = None,
        no_cache: bool = False,
    ) -> list[chat_pb.BatchChatItem]:
        """``BatchChat``: 1 to 50 independent prompts; one item (with its own status) each."""
        reply: chat_pb.BatchChatResponse = await self._unary(
            self._chat.BatchChat,
            chat_pb.BatchChatRequest(
                prompts=list(prompts), model=model, options=options, no_cache=no_cache
            ),
            deadline=self._generation_timeout,
        )
        return list(reply.items)

    async def list_conversations_page(
        self, *, page_size: int = 20, page_token: str = ""
    ) -> chat_pb.ListConversationsResponse:
        """``ListConversations``: one page (1 to 100) of the caller's conversations."""
        reply: chat_pb.ListConversationsResponse = await self._unary(
            self._chat.ListConversations,
            chat_pb.ListConversationsRequest(page_size=page_size, page_token=page_token),
        )
        return reply

    async def list_conversations(self, *, limit: int = 1_000) -> list[chat_pb.Conversation]:
        """Up to ``limit`` (1 to 10,000) of the caller's conversations, most recent first."""
        wanted = max(1, min(limit, _MAX_CONVERSATIONS))
        conversations: list[chat_pb.Conversation] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply = await self.list_conversations_page(
                page_size=min(_CONVERSATION_PAGE, wanted - len(conversations)),
                page_token=page_token,
            )
            conversations.extend(reply.conversations)
            if (
                len(conversations) >= wanted
                or not reply.next_page_token
                or reply.next_page_token == page_token
            ):
                break
            page_token = reply.next_page_token
        return conversations[:wanted]

    async def get_conversation(self, conversation_id: str) -> chat_pb.GetConversationResponse:
        """``GetConversation``: one of the caller's conversations with its messages."""
        reply: chat_pb.GetConversationResponse = await self._unary(
            self._chat.GetConversation,
            chat_pb.GetConversationRequest(conversation_id=conversation_id),
        )
        return reply

    async def delete_conversation(self, conversation_id: str) -> int:
        """``DeleteConversation``: the number of messages deleted with it."""
        reply: chat_pb.DeleteConversationResponse = await self._unary(
            self._chat.DeleteConversation,
            chat_pb.DeleteConversationRequest(conversation_id=conversation_id),
        )
        return int(reply.messages_deleted)

    async def cache_stats(self) -> chat_pb.GetCacheStatsResponse:
        """``GetCacheStats`` (operators): the reply cache's hits, misses, keys and memory."""
        reply: chat_pb.GetCacheStatsResponse = await self._unary(
            self._chat.GetCacheStats, chat_pb.GetCacheStatsRequest()
        )
        return reply

    async def clear_cache(self) -> int:
        """``ClearCache`` (operators): the number of cached replies deleted."""
        reply: chat_pb.ClearCacheResponse = await self._unary(
            self._chat.ClearCache, chat_pb.ClearCacheRequest()
        )
        return int(reply.keys_deleted)

    # --- tasks -----------------------------------------------------------------------------

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
        """``CreateTask``: store a task and queue it for an agent offering ``task_type``.

        Args:
            task_type: what to do, a capability name such as ``text.summarize``.
            payload: the input, a JSON object (a mapping of JSON values, or a ``Struct``).
            priority: 0 (low, the default) to 3 (critical).
            required_capabilities: further capabilities the agent must offer.
            resources: what the task holds while it runs (it waits QUEUED until granted).
            timeout_seconds: how long one attempt may run; 0 for the service's default.
            idempotency_key: a second call with the same key returns the first task
                (``created`` is then false).
            max_attempts: attempts before it is dead-lettered; 0 for the default.

        Raises:
            CallFailed: ``INVALID_ARGUMENT`` with the violations per field,
                ``RESOURCE_EXHAUSTED`` when the queue is full.

        """
        request = tasks_pb.CreateTaskRequest(
            type=task_type,
            payload=as_struct(payload),
            priority=priority,
            required_capabilities=list(required_capabilities),
            resources=list(resources),
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
        )
        reply: tasks_pb.CreateTaskResponse = await self._unary(self._tasks.CreateTask, request)
        return reply

    async def get_task(self, task_id: str) -> tasks_pb.Task:
        """``GetTask``: one task with every attempt (another user's is ``NOT_FOUND``)."""
        reply: tasks_pb.GetTaskResponse = await self._unary(
            self._tasks.GetTask, tasks_pb.GetTaskRequest(task_id=task_id)
        )
        return reply.task

    async def list_tasks_page(
        self,
        *,
        page_size: int = 20,
        page_token: str = "",
        states: Collection[tasks_pb.TaskState.ValueType] = (),
        task_type: str = "",
        agent_id: str = "",
        all_users: bool = False,
    ) -> tasks_pb.ListTasksResponse:
        """``ListTasks``: one page (1 to 100) of tasks, newest first, filtered.

        ``all_users`` (operators) lists every user's tasks instead of the caller's own.
        """
        reply: tasks_pb.ListTasksResponse = await self._unary(
            self._tasks.ListTasks,
            tasks_pb.ListTasksRequest(
                page_size=page_size,
                page_token=page_token,
                states=sorted(states),
                type=task_type,
                agent_id=agent_id,
                all_users=all_users,
            ),
        )
        return reply

    async def list_tasks(
        self,
        *,
        states: Collection[tasks_pb.TaskState.ValueType] = (),
        task_type: str = "",
        agent_id: str = "",
        all_users: bool = False,
        limit: int = 100,
    ) -> list[tasks_pb.Task]:
        """Up to ``limit`` (1 to 10,000) tasks, newest first; filters as :meth:`list_tasks_page`."""
        wanted = max(1, min(limit, _MAX_TASKS))
        found: list[tasks_pb.Task] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply = await self.list_tasks_page(
                page_size=min(_TASK_PAGE, wanted - len(found)),
                page_token=page_token,
                states=states,
                task_type=task_type,
                agent_id=agent_id,
                all_users=all_users,
            )
            found.extend(reply.tasks)
            if (
                len(found) >= wanted
                or not reply.next_page_token
                or reply.next_page_token == page_token
            ):
                break
            page_token = reply.next_page_token
        return found[:wanted]

    async def cancel_task(self, task_id: str, *, reason: str = "") -> tasks_pb.Task:
        """``CancelTask``: the task, CANCELLED (a finished one is ``FAILED_PRECONDITION``)."""
        reply: tasks_pb.CancelTaskResponse = await self._unary(
            self._tasks.CancelTask, tasks_pb.CancelTaskRequest(task_id=task_id, reason=reason)
        )
        return reply.task

    def watch_task(self, task_id: str) -> AsyncIterator[tasks_pb.Task]:
        """``WatchTask``, followed: the task now (with its attempts), then at every change.

        The iterator ends after the task reaches a final state (:data:`FINAL_STATES`). A stream
        lost before that is reopened (the service sends the task as it is then); the service's
        keep-alive (the task again, unchanged) is not yielded twice.
        """

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, tasks_pb.WatchTaskResponse]:
            return self._tasks.WatchTask(
                tasks_pb.WatchTaskRequest(task_id=task_id), metadata=metadata
            )

        async def changes() -> AsyncIterator[tasks_pb.Task]:
            last: tasks_pb.Task | None = None
            stream: AsyncGenerator[tasks_pb.WatchTaskResponse] = self._follow(start)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    if not message.HasField("task") or message.task == last:
                        continue
                    last = message.task
                    yield message.task
                    if message.task.state in FINAL_STATES:
                        return

        return changes()

    def watch_tasks(
        self,
        *,
        states: Collection[tasks_pb.TaskState.ValueType] = (),
        task_type: str = "",
        all_users: bool = False,
        snapshot_size: int = 50,
    ) -> AsyncIterator[tasks_pb.WatchTasksResponse]:
        """``WatchTasks``, followed: the newest matching tasks (``snapshot``), then each change.

        A task that stops matching a state filter is sent once more, so a list can drop it.
        Keep-alives (no task) are not yielded. After a reconnect the service sends a fresh
        snapshot (``snapshot`` true again) before the changes.
        """
        request = tasks_pb.WatchTasksRequest(
            states=sorted(states),
            type=task_type,
            all_users=all_users,
            snapshot_size=snapshot_size,
        )

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, tasks_pb.WatchTasksResponse]:
            return self._tasks.WatchTasks(request, metadata=metadata)

        async def changes() -> AsyncIterator[tasks_pb.WatchTasksResponse]:
            stream: AsyncGenerator[tasks_pb.WatchTasksResponse] = self._follow(start)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    if message.HasField("task"):
                        yield message

        return changes()

    async def list_dead_letters(self, *, limit: int = 100) -> list[tasks_pb.Task]:
        """``ListDeadLetters`` (operators): up to ``limit`` (1 to 10,000), newest first."""
        wanted = max(1, min(limit, _MAX_TASKS))
        found: list[tasks_pb.Task] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply: tasks_pb.ListDeadLettersResponse = await self._unary(
                self._tasks.ListDeadLetters,
                tasks_pb.ListDeadLettersRequest(
                    page_size=min(_TASK_PAGE, wanted - len(found)), page_token=page_token
                ),
            )
            found.extend(reply.tasks)
            if (
                len(found) >= wanted
                or not reply.next_page_token
                or reply.next_page_token == page_token
            ):
                break
            page_token = reply.next_page_token
        return found[:wanted]

    async def requeue_dead_letter(self, task_id: str) -> tasks_pb.Task:
        """``RequeueDeadLetter`` (operators): the task, queued again with fresh attempts."""
        reply: tasks_pb.RequeueDeadLetterResponse = await self._unary(
            self._tasks.RequeueDeadLetter, tasks_pb.RequeueDeadLetterRequest(task_id=task_id)
        )
        return reply.task

    # --- agents and the coordinator --------------------------------------------------------

    async def list_agents(self) -> list[agents_pb.Agent]:
        """``ListAgents``: every known agent instance, online ones first."""
        reply: agents_pb.ListAgentsResponse = await self._unary(
            self._agents.ListAgents, agents_pb.ListAgentsRequest()
        )
        return list(reply.agents)

    async def get_agent(self, agent_id: str) -> agents_pb.Agent:
        """``GetAgent``: one agent instance (``<agent name>.<instance>``)."""
        reply: agents_pb.GetAgentResponse = await self._unary(
            self._agents.GetAgent, agents_pb.GetAgentRequest(agent_id=agent_id)
        )
        return reply.agent

    def watch_agents(self) -> AsyncIterator[agents_pb.WatchAgentsResponse]:
        """``WatchAgents``, followed: every known instance (``snapshot``), then each change.

        Keep-alives are not yielded. An empty registry is one message with ``snapshot`` set and
        no ``agent``, so a caller can tell "no agents" from "nothing heard yet". After a
        reconnect the service sends the whole registry again.
        """

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, agents_pb.WatchAgentsResponse]:
            return self._agents.WatchAgents(agents_pb.WatchAgentsRequest(), metadata=metadata)

        async def changes() -> AsyncIterator[agents_pb.WatchAgentsResponse]:
            stream: AsyncGenerator[agents_pb.WatchAgentsResponse] = self._follow(start)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    if message.HasField("agent") or message.snapshot:
                        yield message

        return changes()

    async def get_strategy(self) -> coordinator_pb.GetStrategyResponse:
        """``GetStrategy`` (operators): how agents are chosen, and who changed it last."""
        reply: coordinator_pb.GetStrategyResponse = await self._unary(
            self._coordinator.GetStrategy, coordinator_pb.GetStrategyRequest()
        )
        return reply

    async def set_strategy(
        self, strategy: coordinator_pb.Strategy.ValueType
    ) -> coordinator_pb.Strategy.ValueType:
        """``SetStrategy`` (operators, audited): the strategy now in force."""
        reply: coordinator_pb.SetStrategyResponse = await self._unary(
            self._coordinator.SetStrategy, coordinator_pb.SetStrategyRequest(strategy=strategy)
        )
        return reply.strategy

    async def coordinator_stats(self) -> coordinator_pb.GetStatsResponse:
        """``GetStats`` (operators): queue depths, in flight, throughput, failures."""
        reply: coordinator_pb.GetStatsResponse = await self._unary(
            self._coordinator.GetStats, coordinator_pb.GetStatsRequest()
        )
        return reply

    async def list_streams(self) -> list[coordinator_pb.StreamInfo]:
        """``ListStreams`` (operators): the dispatch streams with their consumers' counts."""
        reply: coordinator_pb.ListStreamsResponse = await self._unary(
            self._coordinator.ListStreams, coordinator_pb.ListStreamsRequest()
        )
        return list(reply.streams)

    # --- resources -------------------------------------------------------------------------

    async def get_resources(self) -> list[resources_pb.Resource]:
        """``GetResources``: each resource's capacity, allocation and use on the host."""
        reply: resources_pb.GetResourcesResponse = await self._unary(
            self._resources.GetResources, resources_pb.GetResourcesRequest()
        )
        return list(reply.resources)

    async def list_allocations(
        self,
        *,
        resource_type: resources_pb.ResourceType.ValueType = (
            resources_pb.RESOURCE_TYPE_UNSPECIFIED
        ),
        holder: str = "",
    ) -> list[resources_pb.Allocation]:
        """``ListAllocations``: the live leases, oldest first, of one resource or holder."""
        reply: resources_pb.ListAllocationsResponse = await self._unary(
            self._resources.ListAllocations,
            resources_pb.ListAllocationsRequest(resource_type=resource_type, holder=holder),
        )
        return list(reply.allocations)

    async def get_policies(self) -> list[resources_pb.Policy]:
        """``GetPolicies``: the policy of every resource type."""
        reply: resources_pb.GetPoliciesResponse = await self._unary(
            self._resources.GetPolicies, resources_pb.GetPoliciesRequest()
        )
        return list(reply.policies)

    # --- hardware --------------------------------------------------------------------------

    async def get_hardware_status(self, top_processes: int = 10) -> hardware_pb.HostSample:
        """``GetStatus``: a fresh sample with ``top_processes`` (0 means 10; at most 100)."""
        reply: hardware_pb.GetStatusResponse = await self._unary(
            self._hardware.GetStatus, hardware_pb.GetStatusRequest(top_processes=top_processes)
        )
        return reply.sample

    def watch_hardware_metrics(
        self, interval_seconds: float = 1.0, top_processes: int = 0
    ) -> AsyncIterator[hardware_pb.HostSample]:
        """``WatchMetrics``, followed: a sample every ``interval_seconds`` (0.25 to 60).

        ``top_processes`` (0 to 100) busiest processes come with each sample. Keep-alives are
        not yielded; after a reconnect samples simply continue (the first one's rates cover the
        time since the service's previous sample of the host).
        """
        request = hardware_pb.WatchMetricsRequest(top_processes=top_processes)
        request.interval.FromMilliseconds(round(interval_seconds * 1000))

        def start(
            metadata: Metadata,
        ) -> grpc.aio.UnaryStreamCall[object, hardware_pb.WatchMetricsResponse]:
            return self._hardware.WatchMetrics(request, metadata=metadata)

        async def samples() -> AsyncIterator[hardware_pb.HostSample]:
            stream: AsyncGenerator[hardware_pb.WatchMetricsResponse] = self._follow(start)
            async with contextlib.aclosing(stream):
                async for message in stream:
                    if message.HasField("sample"):
                        yield message.sample

        return samples()

    async def analyze_storage(
        self, path: str = "", *, limits: hardware_pb.ScanLimits | None = None
    ) -> hardware_pb.AnalyzeStorageResponse:
        """``AnalyzeStorage``: totals, extensions, size and age buckets of ``path``.

        ``path`` is a directory under an allowed root (empty: the first root); ``limits``
        bound the walk (:func:`scan_limits`; unset: the service's defaults).
        """
        reply: hardware_pb.AnalyzeStorageResponse = await self._unary(
            self._hardware.AnalyzeStorage,
            hardware_pb.AnalyzeStorageRequest(path=path, limits=limits),
            deadline=self._storage_timeout,
        )
        return reply

    async def find_duplicates(
        self,
        path: str = "",
        *,
        min_size_bytes: int = 0,
        max_groups: int = 0,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.FindDuplicatesResponse:
        """``FindDuplicates``: groups of identical files under ``path``, largest waste first.

        ``max_groups`` 0 means 100 (at most 1,000); files below ``min_size_bytes`` are ignored.
        """
        reply: hardware_pb.FindDuplicatesResponse = await self._unary(
            self._hardware.FindDuplicates,
            hardware_pb.FindDuplicatesRequest(
                path=path, limits=limits, min_size_bytes=min_size_bytes, max_groups=max_groups
            ),
            deadline=self._storage_timeout,
        )
        return reply

    async def find_large_files(
        self,
        path: str = "",
        *,
        min_size_bytes: int = 0,
        max_files: int = 0,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.FindLargeFilesResponse:
        """``FindLargeFiles``: files of at least ``min_size_bytes`` (0: 100 MiB), largest first.

        ``max_files`` is how many are returned (0 means 50, at most 1,000), not a walk limit.
        """
        reply: hardware_pb.FindLargeFilesResponse = await self._unary(
            self._hardware.FindLargeFiles,
            hardware_pb.FindLargeFilesRequest(
                path=path, limits=limits, min_size_bytes=min_size_bytes, max_files=max_files
            ),
            deadline=self._storage_timeout,
        )
        return reply

    async def storage_report(self) -> hardware_pb.GetStorageReportResponse:
        """``GetStorageReport``: disk use, analysis, duplicates and large files of each root."""
        reply: hardware_pb.GetStorageReportResponse = await self._unary(
            self._hardware.GetStorageReport,
            hardware_pb.GetStorageReportRequest(),
            deadline=self._storage_timeout,
        )
        return reply

    async def hardware_recommendations(self) -> hardware_pb.GetRecommendationsResponse:
        """``GetRecommendations``: the threshold rules that fire on a fresh sample."""
        reply: hardware_pb.GetRecommendationsResponse = await self._unary(
            self._hardware.GetRecommendations, hardware_pb.GetRecommendationsRequest()
        )
        return reply

    async def hardware_advice(
        self, model: str = "", question: str = ""
    ) -> hardware_pb.GetAdviceResponse:
        """``GetAdvice``: a model's plain-words explanation of a sample (labelled model output).

        ``model`` empty means the configured one; ``question`` (at most 500 characters) focuses
        the advice.
        """
        reply: hardware_pb.GetAdviceResponse = await self._unary(
            self._hardware.GetAdvice,
            hardware_pb.GetAdviceRequest(model=model, question=question),
            deadline=self._generation_timeout,
        )
        return reply

    async def clean_files(
        self,
        path: str,
        *,
        older_than_days: int = 0,
        patterns: Sequence[str] = (),
        dry_run: bool = True,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.ChangeReport:
        """``CleanFiles`` (operators): quarantine files under ``path`` older than the age.

        ``older_than_days`` 0 means 3; ``patterns`` are globs on the file name (empty: every
        file). A dry run (the default) reports what would move and changes nothing.
        """
        reply: hardware_pb.CleanFilesResponse = await self._unary(
            self._hardware.CleanFiles,
            hardware_pb.CleanFilesRequest(
                path=path,
                older_than_days=older_than_days,
                patterns=list(patterns),
                limits=limits,
                dry_run=dry_run,
            ),
            deadline=self._storage_timeout,
        )
        return reply.report

    async def deduplicate(
        self,
        path: str,
        *,
        dry_run: bool = True,
        min_size_bytes: int = 0,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.ChangeReport:
        """``Deduplicate`` (operators): keep each group's newest file, quarantine the others."""
        reply: hardware_pb.DeduplicateResponse = await self._unary(
            self._hardware.Deduplicate,
            hardware_pb.DeduplicateRequest(
                path=path, limits=limits, min_size_bytes=min_size_bytes, dry_run=dry_run
            ),
            deadline=self._storage_timeout,
        )
        return reply.report

    async def compress_logs(
        self,
        path: str,
        *,
        older_than_days: int = 0,
        dry_run: bool = True,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.ChangeReport:
        """``CompressLogs`` (operators): gzip old logs when that makes them smaller.

        ``older_than_days`` 0 means 7; the originals go into the quarantine.
        """
        reply: hardware_pb.CompressLogsResponse = await self._unary(
            self._hardware.CompressLogs,
            hardware_pb.CompressLogsRequest(
                path=path, older_than_days=older_than_days, limits=limits, dry_run=dry_run
            ),
            deadline=self._storage_timeout,
        )
        return reply.report

    async def rotate_logs(
        self,
        path: str,
        *,
        min_size_bytes: int = 0,
        keep: int = 0,
        dry_run: bool = True,
        limits: hardware_pb.ScanLimits | None = None,
    ) -> hardware_pb.ChangeReport:
        """``RotateLogs`` (operators): rotate logs of at least ``min_size_bytes`` (0: 10 MiB).

        ``keep`` generations are kept (0 means 5); older ones go into the quarantine.
        """
        reply: hardware_pb.RotateLogsResponse = await self._unary(
            self._hardware.RotateLogs,
            hardware_pb.RotateLogsRequest(
                path=path,
                min_size_bytes=min_size_bytes,
                keep=keep,
                limits=limits,
                dry_run=dry_run,
            ),
            deadline=self._storage_timeout,
        )
        return reply.report

    async def renice_processes(
        self,
        *,
        dry_run: bool = True,
        min_cpu_percent: float = 0.0,
        max_processes: int = 0,
        nice: int = 0,
    ) -> hardware_pb.ChangeReport:
        """``ReniceProcesses`` (operators): lower the priority of the service user's CPU hogs.

        Defaults (0): above 25 % CPU, at most 5 processes, to niceness 10. Never a system
        process, another user's, or the mesh's own.
        """
        reply: hardware_pb.ReniceProcessesResponse = await self._unary(
            self._hardware.ReniceProcesses,
            hardware_pb.ReniceProcessesRequest(
                min_cpu_percent=min_cpu_percent,
                max_processes=max_processes,
                nice=nice,
                dry_run=dry_run,
            ),
        )
        return reply.report

    async def reclaim_memory(self, *, dry_run: bool = True) -> hardware_pb.ReclaimMemoryResponse:
        """``ReclaimMemory`` (operators): garbage collection and heap trimming in the mesh.

        Only the mesh's own processes are asked; resident memory before and after.
        """
        reply: hardware_pb.ReclaimMemoryResponse = await self._unary(
            self._hardware.ReclaimMemory,
            hardware_pb.ReclaimMemoryRequest(dry_run=dry_run),
            deadline=self._storage_timeout,
        )
        return reply

    async def list_quarantine(self, *, limit: int = 1_000) -> list[hardware_pb.QuarantinedFile]:
        """``ListQuarantine`` (operators): up to ``limit`` (1 to 100,000) entries, newest first."""
        wanted = max(1, min(limit, _MAX_QUARANTINE))
        found: list[hardware_pb.QuarantinedFile] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            reply: hardware_pb.ListQuarantineResponse = await self._unary(
                self._hardware.ListQuarantine,
                hardware_pb.ListQuarantineRequest(
                    page_size=min(_QUARANTINE_PAGE, wanted - len(found)), page_token=page_token
                ),
            )
            found.extend(reply.files)
            if (
                len(found) >= wanted
                or not reply.next_page_token
                or reply.next_page_token == page_token
            ):
                break
            page_token = reply.next_page_token
        return found[:wanted]

    async def restore_quarantined(
        self, entry_ids: Sequence[str]
    ) -> list[hardware_pb.RestoreResult]:
        """``RestoreQuarantined`` (operators): put 1 to 1,000 entries back, byte for byte.

        One result per entry, in order; an entry whose place is taken again is not restored
        (its ``error`` says why) and nothing is overwritten.
        """
        reply: hardware_pb.RestoreQuarantinedResponse = await self._unary(
            self._hardware.RestoreQuarantined,
            hardware_pb.RestoreQuarantinedRequest(entry_ids=list(entry_ids)),
            deadline=self._storage_timeout,
        )
        return list(reply.results)

    async def purge_quarantine(
        self, entry_ids: Sequence[str] = (), *, dry_run: bool = True
    ) -> hardware_pb.PurgeQuarantineResponse:
        """``PurgeQuarantine`` (admins): delete for good entries past their retention.

        Empty ``entry_ids`` means every entry past it. A dry run (the default) lists them only.
        """
        reply: hardware_pb.PurgeQuarantineResponse = await self._unary(
            self._hardware.PurgeQuarantine,
            hardware_pb.PurgeQuarantineRequest(entry_ids=list(entry_ids), dry_run=dry_run),
            deadline=self._storage_timeout,
        )
        return reply

    # --- plumbing --------------------------------------------------------------------------

    async def _unary(
        self,
        rpc: Callable[..., Awaitable[R]],
        request: object,
        *,
        signed_in: bool = True,
        deadline: float | None = None,
    ) -> R:
        """One unary call with the deadline and the session, renewing it once if refused."""
        token = await self._guarded(self._session.access_token(required=signed_in))
        renewed = False
        while True:
            metadata = bearer(token) if token is not None else ()
            try:
                reply = await rpc(
                    request,
                    timeout=self._call_timeout if deadline is None else deadline,
                    metadata=metadata,
                )
            except grpc.aio.AioRpcError as exc:
                if (
                    exc.code() == grpc.StatusCode.UNAUTHENTICATED
                    and token is not None
                    and not renewed
                ):
                    renewed = True
                    token = (await self._guarded(self._session.renew(token))).access_token
                    continue
                raise self._failed(exc) from None
            self._connection.regained(None)
            return reply

    def _failed(self, exc: grpc.aio.AioRpcError) -> ClientError:
        """The client error for ``exc``; an unreachable mesh is told to the listeners."""
        error = translate(exc, self._target)
        if isinstance(error, MeshUnavailable) and not service_answered(exc):
            self._connection.lost(None, str(error))
        else:
            # A service answered (even UNAVAILABLE for its own backend): the mesh is there.
            self._connection.regained(None)
        return error

    async def _guarded(self, work: Awaitable[R]) -> R:
        """``work`` (a session step that may call the mesh), reporting an unreachable mesh."""
        try:
            return await work
        except MeshUnavailable as exc:
            self._connection.lost(None, str(exc))
            raise

    def _follow(
        self,
        start: Callable[[Metadata], grpc.aio.UnaryStreamCall[object, R]],
        *,
        signed_in: bool = True,
    ) -> AsyncGenerator[R]:
        return follow(
            start,
            session=self._session,
            signed_in=signed_in,
            connection=self._connection,
            policy=self._reconnect,
            target=self._target,
        )

    async def _once(
        self, start: Callable[[Metadata], grpc.aio.UnaryStreamCall[object, R]]
    ) -> AsyncGenerator[R]:
        """A stream read to its end, without reconnecting.

        A refused token is renewed and the call made again once, but only before the first
        message: after it, a second call would repeat what was already yielded.
        """
        token = await self._guarded(self._session.access_token(required=True))
        renewed = False
        while True:
            call = start(bearer(token) if token is not None else ())
            yielded = False
            try:
                async for message in call:
                    yielded = True
                    yield message
                return
            except grpc.aio.AioRpcError as exc:
                if (
                    exc.code() == grpc.StatusCode.UNAUTHENTICATED
                    and token
                    and not renewed
                    and not yielded
                ):
                    renewed = True
                    token = (await self._guarded(self._session.renew(token))).access_token
                    continue
                raise self._failed(exc) from None
            finally:
                call.cancel()

    async def _reply_stream(
        self, start: Callable[[Metadata], grpc.aio.UnaryStreamCall[object, E]]
    ) -> AsyncGenerator[E]:
        """A reply stream (chat, generation): :meth:`_once`, raising a terminal ``error`` event.

        The event is not yielded; it ends the stream with the client error of its status. The
        call's own status follows the event and carries the same rich details, so it is
        preferred; a call that ended OK after an error event raises the event's status.
        """
        failure: status_pb2.Status | None = None
        stream: AsyncGenerator[E] = self._once(start)
        async with contextlib.aclosing(stream):
            async for message in stream:
                if message.WhichOneof("event") == "error":
                    failure = message.error
                    continue  # the call's status, read next, is raised by _once
                if failure is None:
                    yield message
        if failure is not None:
            raise from_rpc_status(failure, self._target)

    @staticmethod
    async def _lines(
        stream: AsyncGenerator[system_pb.TailLogsResponse],
    ) -> AsyncIterator[list[system_pb.LogLine]]:
        async with contextlib.aclosing(stream) as messages:
            async for message in messages:
                if message.lines:
                    yield list(message.lines)


def as_struct(payload: Mapping[str, Any] | struct_pb2.Struct | None) -> struct_pb2.Struct:
    """``payload`` as a ``google.protobuf.Struct`` (a copy; empty for ``None``).

    Raises:
        ValueError: a value is not a JSON value (numbers become doubles, as JSON's are).

    """
    result = struct_pb2.Struct()
    if payload is None:
        return result
    if isinstance(payload, struct_pb2.Struct):
        result.CopyFrom(payload)
        return result
    try:
        result.update(dict(payload))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"the payload is not a JSON object: {exc}") from None
    return result


def scan_limits(
    *,
    max_depth: int = 0,
    max_files: int = 0,
    max_seconds: float = 0.0,
    include_hidden: bool = False,
) -> hardware_pb.ScanLimits:
    """A walk's bounds for the hardware service's storage calls (0: the service's default).

    Values above the service's configured maxima are refused (``INVALID_ARGUMENT``).
    """
    limits = hardware_pb.ScanLimits(
        max_depth=max_depth, max_files=max_files, include_hidden=include_hidden
    )
    if max_seconds > 0:
        limits.max_duration.FromMilliseconds(round(max_seconds * 1000))
    return limits
