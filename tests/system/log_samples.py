"""Lines copied from the logs of a mesh run by ``sutazai up`` (state dirs of the benchmarks and
the test suite), one per format and level seen, with the level each states.

Formats whose other levels did not occur in those runs are completed with lines in the same
format (marked ``# format``), written after the components' own sources.
"""

from sutazai.services.system.logs import Level

SAMPLES: list[tuple[str, str, Level]] = [
    # structlog JSON of the mesh's Python processes (services, gateway)
    (
        "auth",
        '{"schema": "auth", "migration": "0001_users_and_refresh_tokens.sql", "event": '
        '"migration.applied", "service": "auth", "level": "info", "timestamp": '
        '"2026-11-30T15:44:49.776787Z"}',
        Level.INFO,
    ),
    (
        "gateway",
        '{"peer": "unix:", "event": "xds.stream_opened", "service": "gateway", '
        '"level": "warning", "timestamp": "2026-11-30T15:44:46.915549Z"}',  # format
        Level.WARNING,
    ),
    (
        "system",
        '{"event": "rpc.failed", "grpc_method": "/sutazai.system.v1.SystemService/GetStatus", '
        '"service": "system", "level": "error", "timestamp": "2026-11-30T15:44:48.5Z"}',  # format
        Level.ERROR,
    ),
    # Envoy's JSON access log: no level
    (
        "envoy",
        '{"attempts":1,"bytes_received":5,"bytes_sent":42,"downstream_remote_address":'
        '"127.0.0.1:40540","duration_ms":3,"event":"envoy.access","grpc_path":'
        '"/sutazai.system.v1.SystemService/GetStatus","grpc_status":0,"method":"POST",'
        '"response_code":200}',
        Level.NONE,
    ),
    # Envoy's own log
    (
        "envoy",
        "[2026-11-30 15:56:33.138][24462][warning][main] [source/server/server.cc:1028] "
        "caught ENVOY_SIGTERM",
        Level.WARNING,
    ),
    (
        "envoy",
        "[2026-11-30 15:56:33.144][24462][error][config] [source/common/config/utility.cc:1] "
        "gRPC config stream closed",  # format
        Level.ERROR,
    ),
    (
        "envoy",
        "[2026-11-30 15:56:33.144][24462][critical][main] [source/server/server.cc:1] "
        "error initializing configuration",  # format
        Level.CRITICAL,
    ),
    (
        "envoy",
        "[2026-11-30 15:56:33.144][24462][debug][upstream] [source/x.cc:1] x",  # format
        Level.DEBUG,
    ),
    # NATS
    ("nats", "[24407] 2026/11/30 15:44:42.619964 [INF] Starting nats-server", Level.INFO),
    (
        "nats",
        "[24407] 2026/11/30 15:44:42.620085 [WRN] Plaintext passwords detected, use nkeys or "
        "bcrypt",
        Level.WARNING,
    ),
    (
        "nats",
        "[24407] 2026/11/30 15:44:42.7 [ERR] 127.0.0.1:5 - cid:9 - authentication error",  # format
        Level.ERROR,
    ),
    ("nats", "[24407] 2026/11/30 15:44:42.7 [FTL] Error listening on port", Level.CRITICAL),
    ("nats", "[24407] 2026/11/30 15:44:42.7 [DBG] Trusted keys", Level.DEBUG),  # format
    ("nats", "[24407] 2026/11/30 15:44:42.7 [TRC] <<- [PING]", Level.DEBUG),  # format
    ("nats", "[24407] 2026/11/30 15:44:42.620067 [INF]   Git:      [b2fd3ef]", Level.INFO),
    # PostgreSQL
    (
        "postgres",
        "2026-11-30 15:44:43.591 UTC [24429] LOG:  starting PostgreSQL 16.2 on "
        "x86_64-pc-linux-gnu, compiled by gcc (GCC) 10.2.1 20210130 (Red Hat 10.2.1-11), 64-bit",
        Level.INFO,
    ),
    (
        "postgres",
        "2026-11-30 15:49:43.695 UTC [24431] LOG:  checkpoint starting: time",
        Level.INFO,
    ),
    (
        "postgres",
        "2026-11-30 15:49:43.695 UTC [24431] WARNING:  there is no transaction in progress",
        Level.WARNING,
    ),  # format
    (
        "postgres",
        '2026-11-30 15:49:43.695 UTC [24431] ERROR:  relation "x" does not exist',  # format
        Level.ERROR,
    ),
    (
        "postgres",
        '2026-11-30 15:49:43.695 UTC [24431] FATAL:  password authentication failed for user "a"',
        Level.CRITICAL,
    ),  # format
    ("postgres", "2026-11-30 15:49:43.695 UTC [1] PANIC:  could not write", Level.CRITICAL),
    ("postgres", "2026-11-30 15:49:43.695 UTC [1] DEBUG2:  checkpointer", Level.DEBUG),
    # Redis
    (
        "redis",
        "24440:C 30 Nov 2026 15:44:43.873 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo",
        Level.WARNING,
    ),
    (
        "redis",
        "24440:M 30 Nov 2026 15:44:43.874 * monotonic clock: POSIX clock_gettime",
        Level.INFO,
    ),
    ("redis", "24440:M 30 Nov 2026 15:44:43.874 - Accepted 127.0.0.1:5", Level.DEBUG),  # format
    ("redis", "24440:M 30 Nov 2026 15:44:43.874 . Client closed", Level.DEBUG),  # format
    # The supervisor: its console log and the marker it writes into each component's log
    (
        "supervisor",
        "2026-11-30T15:44:42.598117 [info     ] component.starting             "
        "component=nats external=False",
        Level.INFO,
    ),
    (
        "supervisor",
        "2026-11-30T15:44:42.598117 [warning  ] component.restarting  component=auth",  # format
        Level.WARNING,
    ),
    (
        "supervisor",
        "2026-11-30T15:44:42.598117 [error    ] component.failed  component=auth",  # format
        Level.ERROR,
    ),
    (
        "postgres",
        "--- 2026-11-30T15:44:43+00:00 supervisor starts postgres: /venv/bin/postgres -D "
        "/tmp/bench-state/postgres/data -h 127.0.0.1 -p 10000",
        Level.INFO,
    ),
    # gRPC's C core in a Python process
    (
        "supervisor",
        "I1130 15:44:46.767696   24405 fork_posix.cc:71] Other threads are currently calling "
        "into gRPC, skipping fork() handlers",
        Level.INFO,
    ),
    ("auth", "E1130 15:44:46.767696   24405 chttp2_transport.cc:1] closed", Level.ERROR),
    # Lines that state no level
    ("auth", "Traceback (most recent call last):", Level.NONE),
    ("auth", '  File "/x.py", line 1, in <module>', Level.NONE),
    ("auth", "{not json", Level.NONE),
    ("auth", '{"level": 5}', Level.NONE),
    ("auth", "", Level.NONE),
]
