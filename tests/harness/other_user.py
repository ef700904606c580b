"""Acting as another local user: what a plain, non-root process on the host can reach."""

from __future__ import annotations

import errno
import os
import pwd
import socket
from collections.abc import Sequence
from pathlib import Path

OTHER_USER = "nobody"


def connect_as(user: str, paths: Sequence[Path]) -> list[str]:
    """Try to connect to each Unix socket as ``user``; ``"connected"`` or the errno's name.

    Needs root (to switch users). A forked child drops to ``user`` and tries, without exec:
    the test's interpreter may live where ``user`` cannot execute it.
    """
    account = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            outcomes = [_try_connect(path) for path in paths]
            os.write(write_end, "\n".join(outcomes).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child as {user} failed"
    return data.split("\n")


def _try_connect(path: Path) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(path))
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
    return "connected"
