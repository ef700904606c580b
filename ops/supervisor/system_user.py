"""An unprivileged system account for servers that refuse to run as root (PostgreSQL)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

from sutazai.ops.supervisor.errors import LaunchError

log = structlog.get_logger(__name__)


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the account ``name``, creating it as a system user without a home if missing.

    Raises:
        LaunchError: the account does not exist and ``useradd`` failed.

    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    command = [
        "useradd",
        "--system",
        "--no-create-home",
        "--user-group",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise LaunchError(f"cannot create system user {name!r}: {detail.strip()}") from exc
    log.info("system_user.created", user=name)
    return pwd.getpwnam(name)


def grant_traverse(path: Path) -> None:
    """Let other users walk down to ``path``: add the search bit (o+x) where it is missing.

    Only the search bit is added, never read: other users can reach a known path but cannot
    list directories (the secrets file stays 0600 either way).
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
            log.info("path.traverse_granted", path=str(directory))


def chown_tree(path: Path, account: pwd.struct_passwd) -> None:
    """Give ``path`` and everything below it to ``account`` (skipping what it already owns)."""
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, name) for name in [*dirs, *files])]:
            info = os.lstat(entry)
            if info.st_uid != account.pw_uid or info.st_gid != account.pw_gid:
                os.lchown(entry, account.pw_uid, account.pw_gid)


@dataclass(frozen=True, slots=True)
class Identity:
    """User, group and supplementary groups for a child (``None`` fields: keep the current)."""

    uid: int | None = None
    gid: int | None = None
    extra_groups: list[int] | None = None


def identity_of(user: str | None) -> Identity:
    """The full identity of ``user``, or the current one for ``None``.

    Switching the user id alone would keep root's group and supplementary groups, and a
    root-group process is denied what the "other" permission bits allow.
    """
    if user is None:
        return Identity()
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise LaunchError(f"no such user {user!r}") from exc
    return Identity(uid=entry.pw_uid, gid=entry.pw_gid, extra_groups=[])
