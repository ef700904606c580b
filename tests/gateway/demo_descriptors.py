"""A synthetic descriptor set exercising what the real protos do not yet: streaming and POST."""

from __future__ import annotations

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2

from sutazai.auth.v1 import access_pb2

DEMO_SERVICE = "sutazai.demo.v1.DemoService"
OTHER_PACKAGE_SERVICE = "acme.other.v1.OtherService"


def demo_descriptor_set(*, with_imports: bool = True) -> bytes:
    """Serialized FileDescriptorSet: ``DemoService`` (4 methods) and a non-mesh service.

    ``Get`` is public and has an additional, custom (``HEAD``) binding.
    """
    demo = descriptor_pb2.FileDescriptorProto(
        name="sutazai/demo/v1/demo.proto",
        package="sutazai.demo.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "sutazai/auth/v1/access.proto"],
    )
    message = demo.message_type.add(name="DemoMessage")
    message.field.add(
        name="text",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        json_name="text",
    )
    service = demo.service.add(name="DemoService")
    _method(service, "Create", post="/v1/demo")
    get = _method(service, "Get", get="/v1/demo/{text}")
    get.options.Extensions[access_pb2.access].public = True
    head = get.options.Extensions[annotations_pb2.http].additional_bindings.add()
    head.custom.kind = "HEAD"
    head.custom.path = "/v1/demo/{text}/head"
    _method(
        service, "Touch", post="/v1/demo:touch"
    ).options.idempotency_level = descriptor_pb2.MethodOptions.IDEMPOTENT
    _method(service, "Watch", post="/v1/demo:watch").server_streaming = True

    other = descriptor_pb2.FileDescriptorProto(
        name="acme/other/v1/other.proto", package="acme.other.v1", syntax="proto3"
    )
    other.message_type.add(name="Ping")
    other.service.add(name="OtherService").method.add(
        name="Ping", input_type=".acme.other.v1.Ping", output_type=".acme.other.v1.Ping"
    )

    files = [demo, other]
    if with_imports:
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
            for m in (descriptor_pb2, http_pb2, annotations_pb2, access_pb2)
        ] + files
    return descriptor_pb2.FileDescriptorSet(file=files).SerializeToString()


def _method(
    service: descriptor_pb2.ServiceDescriptorProto, name: str, *, post: str = "", get: str = ""
) -> descriptor_pb2.MethodDescriptorProto:
    method = service.method.add(
        name=name,
        input_type=".sutazai.demo.v1.DemoMessage",
        output_type=".sutazai.demo.v1.DemoMessage",
    )
    rule = method.options.Extensions[annotations_pb2.http]
    if post:
        rule.post = post
        rule.body = "*"
    else:
        rule.get = get
    return method
