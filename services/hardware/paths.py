"""Which paths the hardware service may read and change: the safety rules, in one place.

A request's path is checked in this order, so that a refusal never depends on what exists
outside the roots (nothing outside is even looked at before the lexical check):

1. **Form** (:class:`InvalidPathError`, INVALID_ARGUMENT): no NUL or control characters,
   valid UTF-8, at most :data:`MAX_PATH_BYTES` (and :data:`MAX_NAME_BYTES` per component), no
   percent-encoded traversal (``%2e%2e``, ``%2f``, double encoding) and no Unicode look-alikes
   of ``.``, ``..`` or a separator (fullwidth dots, the two-dot leader, the division slash).
2. **Lexical place** (:class:`PathRefusedError`, PERMISSION_DENIED): with ``..`` collapsed, the
   path lies under an allowed root and has no protected name as a component.
3. **Real place** (PERMISSION_DENIED): with every symlink resolved, the path still lies under an
   allowed root, below no protected path (matched as whole components: ``/usr`` protects
   ``/usr/lib`` but not ``/usrdata``), with no protected name as a component, and outside the
   mesh's state directory (its ``logs`` directory, a root of its own, excepted).
4. **Existence and kind** (INVALID_ARGUMENT), only once the path is known to be inside.

Walks never follow symlinks (:mod:`.walk`); :meth:`PathPolicy.check_file` repeats the checks
with ``lstat`` right before a change, so a file swapped for a symlink after a scan is refused.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from sutazai.runtime.settings import HardwareSettings
from sutazai.services.hardware.errors import InvalidPathError, PathRefusedError

MAX_PATH_BYTES = 4096
"""Longest path accepted, in UTF-8 bytes (Linux's ``PATH_MAX``)."""
MAX_NAME_BYTES = 255
"""Longest path component accepted, in UTF-8 bytes (Linux's ``NAME_MAX``)."""

# Characters that look like, or normalise (NFKC) to, a dot or a separator. A component made of
# dots and these, or holding a separator look-alike, is refused: on disk it would be a legal
# name, but a caller sending one is probing for a layer that decodes it into traversal.
_DOT_LIKE = frozenset(".\u2024\u2025\u2026\ufe52\uff0e\u0701\u0702\u00b7\u2e31\u2e33")
_SEPARATOR_LIKE = frozenset("\\\u2215\u2044\u2571\u29f5\u29f8\u29f9\ufe68\uff0f\uff3c\u2216")
_MAX_DECODE_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class RefusedRoot:
    """A configured allowed root that is not used, and why (logged by the service at start)."""

    root: Path
    reason: str


class PathPolicy:
    """The allowed roots and protected paths of :class:`HardwareSettings`, applied.

    ``roots`` are the configured allowed roots that exist, resolved (symlinks followed), then
    the mesh's ``logs_dir``. A configured root that is missing or not a directory is ignored;
    one inside a protected path, under a protected name or inside the state directory is
    refused (listed in :attr:`refused_roots` for the service to log, never used).
    Thread-safe: immutable after construction.
    """

    def __init__(self, settings: HardwareSettings, *, state_dir: Path, logs_dir: Path) -> None:
        self._protected_names = frozenset(settings.protected_names)
        protected: set[Path] = set()
        for configured in settings.protected_paths:
            absolute = Path(os.path.abspath(configured))
            protected.add(absolute)
            # Match the real place too: /lib is a symlink to /usr/lib on merged-/usr systems.
            protected.add(absolute.resolve())
        self._protected_paths = frozenset(protected)
        self._state_dir = state_dir.resolve()
        logs = logs_dir.resolve()
        self._logs_dir = logs

        roots: list[Path] = []
        lexical: list[Path] = []
        refused: list[RefusedRoot] = []
        for configured in settings.allowed_roots:
            resolved = configured.resolve()
            if not resolved.is_dir():
                continue
            reason = self._refusal_of_root(resolved)
            if reason is not None:
                refused.append(RefusedRoot(configured, reason))
                continue
            if resolved not in roots:
                roots.append(resolved)
            lexical.append(Path(os.path.abspath(configured)))
        # The mesh's own logs directory is trusted by construction, wherever the state
        # directory lives (even under a protected path such as /root when run as root).
        if logs.is_dir() and logs not in roots:
            roots.append(logs)
            lexical.append(Path(os.path.abspath(logs_dir)))
        self.roots: tuple[Path, ...] = tuple(roots)
        """The resolved allowed roots that exist, in configured order, the logs directory last."""
        self.refused_roots: tuple[RefusedRoot, ...] = tuple(refused)
        """Configured roots that are never used, with the reason."""
        self._lexical_roots = tuple(dict.fromkeys([*lexical, *roots]))

    @property
    def state_dir(self) -> Path:
        """The mesh's state directory (resolved), refused except for its logs directory."""
        return self._state_dir

    # -- requests --------------------------------------------------------------------------

    def resolve(self, raw: str, *, field: str = "path") -> Path:
        """The file or directory a request names, resolved and known to be allowed.

        Empty means the first allowed root; a relative path is relative to it. Raises
        :class:`InvalidPathError` for a malformed path or one that does not exist, and
        :class:`PathRefusedError` for one outside the roots or protected.
        """
        check_form(raw, field=field)
        if not self.roots:
            raise PathRefusedError("no allowed root exists on this host")
        candidate = Path(raw) if raw else self.roots[0]
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        # POSIX keeps a leading "//" apart from "/"; Linux does not: one root, one spelling.
        candidate = Path("/" + str(candidate).lstrip("/"))
        lexical = Path(os.path.normpath(candidate))
        if not any(_is_within(lexical, root) for root in self._lexical_roots):
            raise PathRefusedError("the path is outside the allowed roots")
        names = self._protected_names.intersection(lexical.parts)
        if names:
            raise PathRefusedError(f"the path has a protected component ({min(names)})")
        # Follows symlinks; strict=False so that a dangling link is refused for where it
        # points, not reported as missing (which would reveal what exists outside).
        resolved = candidate.resolve(strict=False)
        reason = self.refusal(resolved)
        if reason is not None:
            raise PathRefusedError(reason)
        try:
            resolved.lstat()
        except FileNotFoundError:
            raise InvalidPathError(field, "no such file or directory") from None
        except OSError:
            raise InvalidPathError(field, "cannot be read") from None
        return resolved

    def resolve_dir(self, raw: str, *, field: str = "path") -> Path:
        """:meth:`resolve`, for a directory (otherwise :class:`InvalidPathError`)."""
        resolved = self.resolve(raw, field=field)
        if not resolved.is_dir():
            raise InvalidPathError(field, "not a directory")
        return resolved

    def check_file(self, path: Path) -> None:
        """Re-check a file right before changing it.

        It must still be a regular file (``lstat``: a symlink or anything else is refused),
        and its parent, resolved, must still be allowed. Raises :class:`PathRefusedError`, or
        :class:`InvalidPathError` when the file is gone.
        """
        if not path.is_absolute():
            raise PathRefusedError("the path is not absolute")
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise InvalidPathError("path", "no such file") from None
        except OSError:
            raise InvalidPathError("path", "cannot be read") from None
        if stat.S_ISLNK(st.st_mode):
            raise PathRefusedError("the path is a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise PathRefusedError("the path is not a regular file")
        real = path.parent.resolve() / path.name
        reason = self.refusal(real)
        if reason is not None:
            raise PathRefusedError(reason)

    # -- the rules -------------------------------------------------------------------------

    def refusal(self, resolved: Path) -> str | None:
        """Why a resolved absolute path must not be touched, or ``None`` if it may be.

        Allowed when some root holds it and, below that root, it crosses no protected path or
        name; the state directory is refused unless the path is in the logs directory.
        """
        holders = [root for root in self.roots if _is_within(resolved, root)]
        if not holders:
            return "the path is outside the allowed roots"
        if _is_within(resolved, self._state_dir) and not _is_within(resolved, self._logs_dir):
            return "the path is in the mesh's state directory"
        reasons = [self._refusal_below(resolved, root) for root in holders]
        if None in reasons:
            return None
        return next(r for r in reasons if r is not None)

    def excluded(self, path: Path) -> bool:
        """Whether a walk must pass over this entry (a path met while walking down a root).

        Walking down from an allowed root, the only ways into refused ground are an entry
        whose name is protected, or one that *is* a protected path or the state directory.
        """
        if path.name in self._protected_names:
            return True
        # The state directory is passed over whole: its logs directory is a root of its own.
        return path == self._state_dir or path in self._protected_paths

    def _refusal_below(self, resolved: Path, root: Path) -> str | None:
        relative = resolved.relative_to(root)
        names = self._protected_names.intersection(relative.parts)
        if names:
            return f"the path has a protected component ({min(names)})"
        for protected in self._protected_paths:
            # Only protected paths inside this root matter: the root itself was accepted.
            if _is_within(protected, root) and _is_within(resolved, protected):
                return f"the path is under the protected path {protected}"
        return None

    def _refusal_of_root(self, root: Path) -> str | None:
        names = self._protected_names.intersection(root.parts)
        if names:
            return f"it has a protected component ({min(names)})"
        for protected in self._protected_paths:
            if _is_within(root, protected):
                return f"it is under the protected path {protected}"
        if _is_within(root, self._state_dir) and not _is_within(root, self._logs_dir):
            return "it is in the mesh's state directory"
        return None


def check_form(raw: str, *, field: str = "path") -> None:
    """Refuse a malformed path string (:class:`InvalidPathError`); see the module docstring."""
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPathError(field, "not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPathError(field, f"longer than {MAX_PATH_BYTES} bytes")
    if "\x00" in raw:
        raise InvalidPathError(field, "contains a NUL character")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise InvalidPathError(field, "contains a control character")
    if _has_encoded_traversal(raw):
        raise InvalidPathError(field, "contains percent-encoded traversal")
    for component in raw.split("/"):
        if len(component.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidPathError(field, f"has a component longer than {MAX_NAME_BYTES} bytes")
        if _looks_like_traversal(component):
            raise InvalidPathError(field, "contains a look-alike of '.', '..' or a separator")


def _has_encoded_traversal(raw: str) -> bool:
    # Decode as a URL layer would, repeatedly (double encoding), and refuse when decoding
    # changes the meaning: a NUL, a backslash, a new separator or a new "." / ".." appears.
    decoded = raw
    for _ in range(_MAX_DECODE_ROUNDS):
        step = unquote(decoded)
        if step == decoded:
            break
        decoded = step
    if decoded == raw:
        return False
    if "\x00" in decoded or decoded.count("\\") != raw.count("\\"):
        return True
    if decoded.count("/") != raw.count("/"):
        return True
    return any(
        (new in (".", "..") and new != old) or _looks_like_traversal(new)
        for old, new in zip(raw.split("/"), decoded.split("/"), strict=True)
    )


def _looks_like_traversal(component: str) -> bool:
    if component in ("", ".", ".."):
        return False
    if any(c in _SEPARATOR_LIKE for c in component):
        return True
    if all(c in _DOT_LIKE for c in component):
        return True
    normal = unicodedata.normalize("NFKC", component)
    return normal != component and (
        normal in (".", "..") or "/" in normal or "\\" in normal or all(c == "." for c in normal)
    )


def _is_within(path: Path, ancestor: Path) -> bool:
    """Whether ``path`` is ``ancestor`` or below it, by whole components."""
    return path == ancestor or ancestor in path.parents
