// An agent of the mesh written in TypeScript, built from protos/ and nats/README.md ("Tasks and
// agents (the wire contract)") alone: no Python, no SDK. It connects to NATS as its own
// principal, heartbeats its AgentHeartbeat into the `sutazai_agents` bucket, pulls its
// TaskAssignments from its durable consumer on SUTAZAI_WORK, reports started, progress and the
// outcome on SUTAZAI_REPORTS (the final report's PubAck before the assignment's ack), sends
// in-progress acks while it works, obeys TaskControl cancel and deletes its key on SIGTERM.
//
// Node runs this file as it is (type stripping, Node >= 22.18), so it uses only erasable
// TypeScript; `tsc --noEmit` (tsconfig.json) type-checks it. ./gen is written by `buf generate`
// with buf.gen.yaml next to this file (see tests/polyglot/nodejs.py).
//
// Environment:
//   SUTAZAI_NATS__URL               NATS server URL(s), comma-separated (nats://127.0.0.1:10007)
//   SUTAZAI_CREDENTIALS_FILE        the principal's credentials file (JSON: principal, nats_user,
//                                   nats_password; mode 0600), as the supervisor writes them
//   SUTAZAI_AGENT_INSTANCE_ID       this instance's id, [A-Za-z0-9_-]{1,64} (random if unset)
//   SUTAZAI_AGENT_MAX_CONCURRENCY   tasks run at once (4)
//   SUTAZAI_AGENT_HEARTBEAT_MS      heartbeat period (3000; the bucket's TTL is 10 s)
//   SUTAZAI_AGENT_DRAIN_MS          on SIGTERM, how long running tasks may finish (10000)
//   SUTAZAI_AGENT_ACK_WAIT_MS       its consumer's ack_wait: the contract's 30000 unless a test
//                                   shortens it to see the in-progress acks at work
//
// Task types (the agent's capabilities), chosen so a test can predict every result exactly:
//   text.reverse    {text: string}  -> {text: <reversed by code point>, length: <code points>}
//   polyglot.echo   <any object>    -> {echo: <the payload>, agent_id: "<name>.<instance>"}
//   polyglot.sleep  {seconds: n, steps?: k} -> {slept_seconds: n}, k progress reports on the way
//   polyglot.fail   {message?: s, retryable?: b} -> fails with INTERNAL and that message

import { readFileSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";

import { create, fromBinary, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { timestampDate, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type Consumer,
  type JetStreamClient,
  type JsMsg,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";

import {
  AgentHeartbeatSchema,
  AgentState,
} from "./gen/sutazai/agents/v1/agent_service_pb.js";
import {
  TaskAssignmentSchema,
  TaskCancelledSchema,
  TaskControlSchema,
  TaskFailedSchema,
  TaskProgressSchema,
  TaskReportSchema,
  TaskStartedSchema,
  TaskSucceededSchema,
  type TaskAssignment,
  type TaskReport,
} from "./gen/sutazai/tasks/v1/dispatch_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

// The wire contract (nats/README.md): every name below is fixed.
const WORK_STREAM = "SUTAZAI_WORK";
const AGENTS_BUCKET = "sutazai_agents";
const ACK_WAIT_MS = 30_000;
const MAX_DELIVER = 1000;
const RUNTIME = "typescript/nats.js";
const VERSION = "0.1.0";

// google.rpc.Code values used in TaskFailed.
const Code = { INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, INTERNAL: 13, UNIMPLEMENTED: 12 };

// Bounds: every input is hostile until checked.
const MAX_TEXT_CHARS = 64 * 1024;
const MAX_SLEEP_SECONDS = 300;
const MAX_STEPS = 100;
const MAX_MESSAGE_CHARS = 512;
const REMEMBERED_CANCELS = 1024;
const PULL_EXPIRES_MS = 2000;
const PUBLISH_TIMEOUT_MS = 5000;
const FINAL_REPORT_TRIES = 5;

const NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const INSTANCE = /^[A-Za-z0-9_-]{1,64}$/;

type Settings = {
  servers: string[];
  user: string;
  password: string;
  name: string;
  instance: string;
  maxConcurrency: number;
  heartbeatMs: number;
  drainMs: number;
  ackWaitMs: number;
};

// A handler's failure: the TaskFailed it becomes.
class TaskError extends Error {
  readonly code: number;
  readonly retryable: boolean;

  constructor(code: number, message: string, retryable: boolean) {
    super(message);
    this.code = code;
    this.retryable = retryable;
  }
}

type Context = {
  signal: AbortSignal;
  agentId: string;
  progress(fraction: number, message: string): Promise<void>;
};

type Handler = (payload: JsonObject, context: Context) => Promise<JsonObject>;

function log(message: string): void {
  process.stderr.write(`[ts-agent] ${new Date().toISOString()} ${message}\n`);
}

function integerSetting(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function loadSettings(): Settings {
  const path = process.env.SUTAZAI_CREDENTIALS_FILE;
  if (!path) throw new Error("SUTAZAI_CREDENTIALS_FILE is not set");
  // Like the Python runtime: a secret others can read is refused, not used.
  if ((statSync(path).mode & 0o077) !== 0) {
    throw new Error(`${path} is readable by others; it must be mode 0600`);
  }
  const document: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (typeof document !== "object" || document === null) {
    throw new Error(`${path} is not a credentials file`);
  }
  const { nats_user: user, nats_password: password } = document as Record<string, unknown>;
  if (typeof user !== "string" || typeof password !== "string") {
    // Name the fields only: the values are secret.
    throw new Error(`${path} has no nats_user and nats_password strings`);
  }
  if (!NAME.test(user)) throw new Error(`NATS user ${JSON.stringify(user)} cannot name an agent`);
  const instance = process.env.SUTAZAI_AGENT_INSTANCE_ID || randomBytes(6).toString("hex");
  if (!INSTANCE.test(instance)) {
    throw new Error("SUTAZAI_AGENT_INSTANCE_ID must match [A-Za-z0-9_-]{1,64}");
  }
  const url = process.env.SUTAZAI_NATS__URL || "nats://127.0.0.1:10007";
  return {
    servers: url.split(",").map((s) => s.trim()).filter((s) => s !== ""),
    user,
    password,
    name: user,
    instance,
    maxConcurrency: integerSetting("SUTAZAI_AGENT_MAX_CONCURRENCY", 4, 1, 64),
    heartbeatMs: integerSetting("SUTAZAI_AGENT_HEARTBEAT_MS", 3000, 100, 9000),
    drainMs: integerSetting("SUTAZAI_AGENT_DRAIN_MS", 10_000, 0, 300_000),
    ackWaitMs: integerSetting("SUTAZAI_AGENT_ACK_WAIT_MS", ACK_WAIT_MS, 1000, 300_000),
  };
}

// --- the task types ---------------------------------------------------------------------------

function stringField(payload: JsonObject, field: string, maxChars: number): string {
  const value = payload[field];
  if (typeof value !== "string") {
    throw new TaskError(Code.INVALID_ARGUMENT, `payload.${field} must be a string`, false);
  }
  if (value.length > maxChars) {
    throw new TaskError(Code.INVALID_ARGUMENT, `payload.${field} exceeds ${maxChars} characters`, false);
  }
  return value;
}

function numberField(payload: JsonObject, field: string, fallback: number, max: number): number {
  const value = payload[field] ?? fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > max) {
    throw new TaskError(Code.INVALID_ARGUMENT, `payload.${field} must be a number from 0 to ${max}`, false);
  }
  return value;
}

// Resolves after `ms`, or rejects with the signal's reason once it is aborted.
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch {
    signal.throwIfAborted();
    throw new Error("sleep interrupted");
  }
}

const HANDLERS: Record<string, Handler> = {
  "text.reverse": async (payload) => {
    const characters = Array.from(stringField(payload, "text", MAX_TEXT_CHARS));
    return { text: characters.reverse().join(""), length: characters.length };
  },
  "polyglot.echo": async (payload, context) => ({ echo: payload, agent_id: context.agentId }),
  "polyglot.sleep": async (payload, context) => {
    const seconds = numberField(payload, "seconds", 0, MAX_SLEEP_SECONDS);
    const steps = Math.max(1, Math.floor(numberField(payload, "steps", 1, MAX_STEPS)));
    for (let step = 1; step <= steps; step += 1) {
      await sleep((seconds * 1000) / steps, context.signal);
      await context.progress(step / steps, `slept ${step} of ${steps} steps`);
    }
    return { slept_seconds: seconds };
  },
  "polyglot.fail": async (payload) => {
    const message = payload.message === undefined ? "asked to fail" : stringField(payload, "message", MAX_MESSAGE_CHARS);
    const retryable = payload.retryable ?? true;
    if (typeof retryable !== "boolean") {
      throw new TaskError(Code.INVALID_ARGUMENT, "payload.retryable must be a boolean", false);
    }
    throw new TaskError(Code.INTERNAL, message, retryable);
  },
};

// --- the agent --------------------------------------------------------------------------------

type Running = { controller: AbortController; started: number };

class Agent {
  readonly settings: Settings;
  readonly agentId: string;
  readonly workSubject: string;
  readonly reportSubject: string;
  readonly controlSubject: string;
  readonly durable: string;
  readonly startedAt = timestampNow();

  private nc!: NatsConnection;
  private js!: JetStreamClient;
  private kv!: KV;
  private consumer!: Consumer;
  private ackWaitMs = ACK_WAIT_MS;

  private readonly running = new Map<string, Running>();
  private readonly cancelled = new Set<string>(); // cancels that arrived before their task
  private slotFreed: (() => void) | null = null;
  private stopping = false;
  private state: AgentState = AgentState.ONLINE;
  private succeeded = 0;
  private failed = 0;
  private totalMs = 0;

  constructor(settings: Settings) {
    this.settings = settings;
    const { name, instance } = settings;
    this.agentId = `${name}.${instance}`;
    this.workSubject = `sutazai.work.${name}.${instance}`;
    this.reportSubject = `sutazai.reports.agent.${name}.${instance}`;
    this.controlSubject = `sutazai.control.${name}.${instance}`;
    this.durable = `agent-${name}-${instance}`;
  }

  async start(): Promise<void> {
    const { servers, user, password, name } = this.settings;
    this.nc = await connect({
      servers,
      user,
      pass: password,
      name: `sutazai-agent ${this.agentId} (${RUNTIME})`,
      // Replies (JetStream API answers, PubAcks, pulled messages) reach only this principal.
      inboxPrefix: `_INBOX.${name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
    // The agent role may not ask $JS.API.INFO: skip the client's API probe.
    this.js = jetstream(this.nc, { checkAPI: false, timeout: PUBLISH_TIMEOUT_MS });
    const jsm = await this.js.jetstreamManager(false);
    // Created by name with its filter in the subject ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>),
    // the only consumer creation the agent role allows; binding an existing one is the same call.
    const info = await jsm.consumers.add(WORK_STREAM, {
      durable_name: this.durable,
      filter_subject: this.workSubject,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.settings.ackWaitMs),
      max_deliver: MAX_DELIVER,
      deliver_policy: DeliverPolicy.All,
    });
    this.ackWaitMs = Math.max(1000, Math.floor((info.config.ack_wait ?? nanos(this.settings.ackWaitMs)) / 1_000_000));
    this.consumer = await this.js.consumers.get(WORK_STREAM, this.durable);
    this.kv = await new Kvm(this.js).open(AGENTS_BUCKET);
    this.nc.subscribe(this.controlSubject, { callback: (error, msg) => {
      if (error) log(`control subscription: ${error.message}`);
      else this.onControl(msg.data);
    } });
    await this.nc.flush();
    await this.heartbeat();
    log(`ready as ${this.agentId}: pulling ${this.workSubject} with ${this.durable}`);
  }

  private onControl(data: Uint8Array): void {
    let control;
    try {
      control = fromBinary(TaskControlSchema, data);
    } catch {
      log("dropped a TaskControl that does not decode");
      return;
    }
    if (control.command.case !== "cancel") return;
    const key = `${control.taskId}.${control.attempt}`;
    const task = this.running.get(key);
    if (task) {
      log(`cancelling ${key}`);
      task.controller.abort(new TaskError(0, "cancelled", false));
      return;
    }
    // The assignment may still be in the stream: remember the cancel (bounded, oldest first out).
    this.cancelled.add(key);
    if (this.cancelled.size > REMEMBERED_CANCELS) {
      const oldest = this.cancelled.values().next().value;
      if (oldest !== undefined) this.cancelled.delete(oldest);
    }
  }

  async heartbeat(): Promise<void> {
    const heartbeat = create(AgentHeartbeatSchema, {
      agentId: this.agentId,
      capabilities: Object.keys(HANDLERS),
      maxConcurrency: this.settings.maxConcurrency,
      running: this.running.size,
      state: this.state,
      succeeded: BigInt(this.succeeded),
      failed: BigInt(this.failed),
      meanDurationMs: this.succeeded + this.failed ? this.totalMs / (this.succeeded + this.failed) : 0,
      startedAt: this.startedAt,
      heartbeatAt: timestampNow(),
      version: VERSION,
      runtime: RUNTIME,
    });
    await this.kv.put(this.agentId, toBinary(AgentHeartbeatSchema, heartbeat));
  }

  async heartbeatLoop(): Promise<void> {
    while (!this.stopping) {
      await delay(this.settings.heartbeatMs);
      if (this.stopping) break;
      try {
        await this.heartbeat();
      } catch (error) {
        log(`heartbeat failed: ${String(error)}`);
      }
    }
  }

  // Pulls one assignment per free slot, so no message waits unattended past its ack_wait.
  async pullLoop(): Promise<void> {
    while (!this.stopping) {
      if (this.running.size >= this.settings.maxConcurrency) {
        await new Promise<void>((resolve) => { this.slotFreed = resolve; });
        continue;
      }
      let msg: JsMsg | null;
      try {
        msg = await this.consumer.next({ expires: PULL_EXPIRES_MS });
      } catch (error) {
        log(`pull failed: ${String(error)}`);
        await delay(500);
        continue;
      }
      if (msg === null) continue;
      if (this.stopping) {
        // Not started, not acknowledged: the coordinator re-dispatches it once this instance's
        // key is gone.
        break;
      }
      void this.run(msg);
    }
  }

  private report(assignment: TaskAssignment, event: TaskReport["event"], msgID: string): Promise<unknown> {
    const report = create(TaskReportSchema, {
      taskId: assignment.taskId,
      attempt: assignment.attempt,
      agentId: this.agentId,
      sentAt: timestampNow(),
      event,
    });
    return this.js.publish(this.reportSubject, toBinary(TaskReportSchema, report), { msgID });
  }

  // The final report must be in JetStream before the assignment leaves the queue: retry (the
  // same message id, so the stream keeps one) until a PubAck; give up without acking otherwise.
  private async finalReport(assignment: TaskAssignment, event: TaskReport["event"], msgID: string): Promise<boolean> {
    for (let attempt = 1; attempt <= FINAL_REPORT_TRIES; attempt += 1) {
      try {
        await this.report(assignment, event, msgID);
        return true;
      } catch (error) {
        log(`final report ${msgID} not acknowledged (try ${attempt}): ${String(error)}`);
        await delay(200 * 2 ** attempt);
      }
    }
    return false;
  }

  private async run(msg: JsMsg): Promise<void> {
    let assignment: TaskAssignment;
    try {
      assignment = fromBinary(TaskAssignmentSchema, msg.data);
    } catch {
      log(`terminating an assignment that does not decode (stream seq ${msg.seq})`);
      msg.term("not a TaskAssignment");
      return;
    }
    const key = `${assignment.taskId}.${assignment.attempt}`;
    if (this.running.has(key)) return; // a redelivery of what runs here: its run acks it
    const controller = new AbortController();
    const started = Date.now();
    this.running.set(key, { controller, started });
    const keepAlive = setInterval(() => {
      try {
        msg.working();
      } catch (error) {
        log(`in-progress ack of ${key} failed: ${String(error)}`); // e.g. the connection is draining
      }
    }, Math.floor(this.ackWaitMs / 3));
    let deadline: NodeJS.Timeout | undefined;
    let outcome: TaskReport["event"];
    try {
      if (this.cancelled.delete(key)) {
        controller.abort(new TaskError(0, "cancelled", false));
      }
      if (assignment.deadline) {
        const left = timestampDate(assignment.deadline).getTime() - Date.now();
        const expire = () => controller.abort(new TaskError(Code.DEADLINE_EXCEEDED, "the attempt ran past its deadline", true));
        if (left <= 0) expire();
        else deadline = setTimeout(expire, left);
      }
      outcome = await this.execute(assignment, key, controller.signal);
    } finally {
      clearInterval(keepAlive);
      clearTimeout(deadline);
    }
    const kind = outcome.case ?? "unknown";
    if (await this.finalReport(assignment, outcome, `${key}.${kind}`)) {
      try {
        await msg.ackAck();
      } catch (error) {
        log(`ack of ${key} not confirmed: ${String(error)}`);
      }
    }
    // Finished tasks only: a cancelled one says nothing about this agent's speed.
    if (kind === "succeeded" || kind === "failed") {
      if (kind === "succeeded") this.succeeded += 1;
      else this.failed += 1;
      this.totalMs += Date.now() - started;
    }
    this.running.delete(key);
    log(`${assignment.type} ${key}: ${kind}`);
    this.slotFreed?.();
    this.slotFreed = null;
  }

  private async execute(assignment: TaskAssignment, key: string, signal: AbortSignal): Promise<TaskReport["event"]> {
    const handler = Object.hasOwn(HANDLERS, assignment.type) ? HANDLERS[assignment.type] : undefined;
    try {
      signal.throwIfAborted();
      await this.report(assignment, { case: "started", value: create(TaskStartedSchema) }, `${key}.started`);
      if (!handler) {
        throw new TaskError(Code.UNIMPLEMENTED, `this agent does not run ${JSON.stringify(assignment.type.slice(0, 100))}`, false);
      }
      let progressReports = 0;
      const context: Context = {
        signal,
        agentId: this.agentId,
        progress: async (fraction, message) => {
          progressReports += 1;
          const value = create(TaskProgressSchema, {
            fraction: Math.min(1, Math.max(0, fraction)),
            message: message.slice(0, MAX_MESSAGE_CHARS),
          });
          try {
            await this.report(assignment, { case: "progress", value }, `${key}.progress.${progressReports}`);
          } catch (error) {
            log(`progress report of ${key} lost: ${String(error)}`); // progress is advisory
          }
        },
      };
      // A handler that ignores its signal still loses the race against it.
      const aborted = new Promise<never>((_, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      const result = await Promise.race([handler(assignment.payload ?? {}, context), aborted]);
      return { case: "succeeded", value: create(TaskSucceededSchema, { result }) };
    } catch (error) {
      const failure = signal.aborted ? signal.reason : error;
      if (failure instanceof TaskError && failure.code === 0) {
        return { case: "cancelled", value: create(TaskCancelledSchema) };
      }
      const { code, message, retryable } = failure instanceof TaskError
        ? failure
        : new TaskError(Code.INTERNAL, failure instanceof Error ? failure.message : String(failure), true);
      const status = create(StatusSchema, { code, message: message.slice(0, MAX_MESSAGE_CHARS) });
      return { case: "failed", value: create(TaskFailedSchema, { error: status, retryable }) };
    }
  }

  // SIGTERM: take no more work, let running tasks finish (bounded), then leave the registry.
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.slotFreed?.();
    this.state = AgentState.DRAINING;
    log(`draining ${this.running.size} running task(s)`);
    try {
      await this.heartbeat();
    } catch (error) {
      log(`draining heartbeat failed: ${String(error)}`);
    }
    const until = Date.now() + this.settings.drainMs;
    while (this.running.size > 0 && Date.now() < until) await delay(50);
    try {
      await this.kv.delete(this.agentId);
    } catch (error) {
      log(`could not delete ${this.agentId} from ${AGENTS_BUCKET}: ${String(error)}`);
    }
    await this.nc.drain();
    log("stopped");
  }

  closed(): Promise<void | Error> {
    return this.nc.closed();
  }
}

async function main(): Promise<void> {
  const settings = loadSettings();
  const agent = new Agent(settings);
  let started = false;
  let stopRequested = false;
  let stopping: Promise<void> | null = null;
  const stop = (signal: string) => {
    log(`${signal}: stopping`);
    // Whatever happens, the process ends: drain time plus a margin for NATS.
    setTimeout(() => process.exit(3), settings.drainMs + 5000).unref();
    stopRequested = true;
    if (started) stopping ??= agent.stop();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  await agent.start();
  started = true;
  if (stopRequested) {
    stopping = agent.stop(); // a signal during start-up: leave at once, registered or not
  } else {
    void agent.heartbeatLoop();
    void agent.pullLoop();
  }
  const closed = await agent.closed();
  if (stopping === null) {
    log(`the NATS connection closed: ${String(closed)}`);
    process.exit(1);
  }
  await stopping;
  // Handlers still running past the drain time are left to redelivery; do not wait for them.
  process.exit(0);
}

main().catch((error: unknown) => {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
