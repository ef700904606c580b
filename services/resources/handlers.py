"""gRPC handlers of ``sutazai.resources.v1.ResourceService``: the caller, then the arbiter.

Who may call what is declared in the proto and enforced by the guard before a handler runs
(``Allocate`` and ``Release`` need an operator, ``SetPolicy`` an admin, the rest a signed-in
user); the guard also audits the mutations. The arbiter does the rest, the same way for the
coordinator's requests over NATS (:mod:`sutazai.services.resources.responder`).
"""

from __future__ import annotations

import grpc

from sutazai.resources.v1 import resource_service_pb2 as pb
from sutazai.resources.v1 import resource_service_pb2_grpc as pb_grpc
from sutazai.runtime.auth import require_identity
from sutazai.services.resources.arbiter import Arbiter


class ResourceHandlers(pb_grpc.ResourceServiceServicer):
    """Thin gRPC face of the :class:`Arbiter`."""

    def __init__(self, arbiter: Arbiter) -> None:
        self._arbiter = arbiter

    async def GetResources(  # noqa: N802 - generated servicer method name
        self, request: pb.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetResourcesResponse:
        """Capacity, allocation and measured use of each resource of the host."""
        require_identity()
        return await self._arbiter.resources()

    async def Allocate(  # noqa: N802 - generated servicer method name
        self, request: pb.AllocateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AllocateResponse:
        """A lease, or RESOURCE_EXHAUSTED with the reason."""
        identity = require_identity()
        return await self._arbiter.allocate(request, actor=identity.username)

    async def Release(  # noqa: N802 - generated servicer method name
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        """End a lease before its time."""
        require_identity()
        return await self._arbiter.release(request)

    async def ListAllocations(  # noqa: N802 - generated servicer method name
        self, request: pb.ListAllocationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAllocationsResponse:
        """Live leases, oldest first."""
        require_identity()
        return await self._arbiter.list_allocations(request)

    async def GetPolicies(  # noqa: N802 - generated servicer method name
        self, request: pb.GetPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPoliciesResponse:
        """Every resource's policy."""
        require_identity()
        return await self._arbiter.policies()

    async def SetPolicy(  # noqa: N802 - generated servicer method name
        self, request: pb.SetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPolicyResponse:
        """Change one resource's policy (admins)."""
        identity = require_identity()
        return await self._arbiter.set_policy(request, actor=identity.username)
