"""The Celery application of the benchmark's Celery side: one no-op task, ``bench.noop``.

Celery's worker finds its application by import (``celery -A sutazai.ops.bench.celery_worker
worker``), so the application is this module's ``app``, configured from the file named by
``SUTAZAI_BENCH_CELERY_CONFIG`` (JSON written by :mod:`.celery_side`: the Redis URL with its
password stays out of the worker's command line and environment). The same configuration is
used by the benchmark's client (:func:`configure`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery

CONFIG_VARIABLE = "SUTAZAI_BENCH_CELERY_CONFIG"
TASK_NAME = "bench.noop"


def configure(app: Any, url: str, prefetch: int) -> None:
    """The settings both the worker and the client use (docs/benchmarks.md lists them).

    Durable like the mesh's side: a task is acknowledged to Redis only after it ran
    (``task_acks_late``), and given back if its worker dies (``task_reject_on_worker_lost``);
    unacknowledged messages wait in Redis under the visibility timeout, so a crash loses none.
    """
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=prefetch,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )


def _load() -> Any:
    app = Celery("sutazai-bench")
    path = os.environ.get(CONFIG_VARIABLE)
    if path:
        config = json.loads(Path(path).read_text("utf-8"))
        configure(app, config["url"], int(config["prefetch"]))
    return app


app = _load()


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def noop() -> dict[str, object]:
    """Nothing to do: the benchmark measures the way there and back."""
    return {}
