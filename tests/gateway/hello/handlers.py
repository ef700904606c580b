"""gRPC handlers of the hello service: translate messages to the domain and back."""

from __future__ import annotations

import grpc

from sutazai.hello.v1 import hello_service_pb2 as pb
from sutazai.hello.v1 import hello_service_pb2_grpc as pb_grpc
from tests.gateway.hello.domain import Greeter


class HelloHandlers(pb_grpc.HelloServiceServicer):
    """The ``HelloService`` RPCs over a :class:`Greeter`."""

    def __init__(self, greeter: Greeter) -> None:
        self._greeter = greeter

    async def SayHello(  # noqa: N802 (gRPC method name)
        self, request: pb.SayHelloRequest, context: grpc.aio.ServicerContext
    ) -> pb.SayHelloResponse:
        return pb.SayHelloResponse(greeting=self._greeter.greet(request.name))

    async def CountGreetings(  # noqa: N802 (gRPC method name)
        self, request: pb.CountGreetingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountGreetingsResponse:
        return pb.CountGreetingsResponse(greetings=self._greeter.greetings)
