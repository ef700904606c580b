// A gRPC client in another language, generated from protos/: calls
// sutazai.system.v1.SystemService/GetStatus over gRPC (HTTP/2) and prints the response as proto
// JSON (proto field names) on stdout. Exits non-zero, with the gRPC status on stderr, if the call
// fails. Usage: node get_status.mjs BASE_URL [TIMEOUT_MS]; with SUTAZAI_TOKEN set, the call is
// signed in (a signed-out caller gets the overall state only).
//
// ./gen is written by `buf generate` with buf.gen.yaml next to this file; the test copies this
// script next to it (see tests/polyglot/test_node_client.py).
import { toJsonString } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  GetStatusResponseSchema,
  SystemService,
} from "./gen/sutazai/system/v1/system_service_pb.js";

const [baseUrl, timeoutArg = "5000"] = process.argv.slice(2);
if (!baseUrl) {
  console.error("usage: node get_status.mjs BASE_URL [TIMEOUT_MS]");
  process.exit(2);
}

const client = createClient(SystemService, createGrpcTransport({ baseUrl }));
try {
  const token = process.env.SUTAZAI_TOKEN;
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await client.getStatus({}, { timeoutMs: Number(timeoutArg), headers });
  console.log(toJsonString(GetStatusResponseSchema, response, { useProtoFieldName: true }));
} catch (error) {
  const reason = ConnectError.from(error);
  console.error(`GetStatus via ${baseUrl} failed: ${reason.message} (gRPC code ${reason.code})`);
  process.exitCode = 1;
}
