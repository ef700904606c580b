"""Component logs are private: a 0700 directory of 0600 files, also after an upgrade."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sutazai.ops.supervisor.logfiles import open_log, prepare_logs_dir
from sutazai.runtime.logfiles import log_path, logs_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_log_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        with open_log(log_path(tmp_path, "envoy")) as sink:
            sink.write(b"line\n")
    finally:
        os.umask(previous)

    assert mode(logs_dir(tmp_path)) == 0o700
    assert mode(log_path(tmp_path, "envoy")) == 0o600
    assert log_path(tmp_path, "envoy").read_bytes() == b"line\n"


def test_logs_left_readable_by_an_older_version_are_made_private(tmp_path: Path) -> None:
    directory = logs_dir(tmp_path)
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # noqa: S103 - what an older version left
    old = log_path(tmp_path, "envoy")
    old.write_text("GET /v1/auth/me ada 10.0.0.7\n")
    os.chmod(old, 0o644)
    appended = log_path(tmp_path, "system")
    appended.write_text("earlier\n")
    os.chmod(appended, 0o666)  # noqa: S103 - what an older version left

    prepare_logs_dir(tmp_path)
    with open_log(appended) as sink:
        sink.write(b"later\n")

    assert mode(directory) == 0o700
    assert (mode(old), mode(appended)) == (0o600, 0o600)
    assert appended.read_text() == "earlier\nlater\n"
