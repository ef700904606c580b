"""Tie a child's life to its parent's: Linux ``PR_SET_PDEATHSIG``.

If the supervisor dies without stopping its children (SIGKILL, OOM killer, a crash), the kernel
sends each child its stop signal, so no server outlives the supervisor holding ports and locks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1

# Resolved once in the parent: a preexec function runs between fork and exec, where loading a
# library could deadlock on locks another thread held at fork time.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    ``subprocess`` calls it after switching user ids, which matters because a uid change
    clears the setting. The parent-pid check closes the race where the parent died between
    ``fork`` and ``prctl``: the child would then never get the signal.
    """
    parent = os.getpid()

    def _preexec() -> None:
        if _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:
            os._exit(1)

    return _preexec
