"""PathPolicy: which roots are used, and every traversal attempt refused with the right error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sutazai.services.hardware.errors import InvalidPathError, PathRefusedError
from sutazai.services.hardware.paths import PathPolicy
from tests.hardware.conftest import Site, Untouched, write

# -- roots -----------------------------------------------------------------------------------


def test_roots_are_the_existing_configured_roots_resolved_then_the_logs_directory(
    site: Site,
) -> None:
    other = site.tmp / "other"
    other.mkdir()
    via_link = site.tmp / "link-to-other"
    via_link.symlink_to(other)
    policy = site.policy(allowed_roots=[site.root, site.tmp / "missing", via_link])
    assert policy.roots == (site.root, other, site.logs)
    assert policy.refused_roots == ()


def test_a_root_inside_a_protected_path_or_name_or_the_state_directory_is_refused(
    site: Site,
) -> None:
    protected = site.tmp / "system"
    (protected / "sub").mkdir(parents=True)
    (site.tmp / "home" / "Documents" / "scratch").mkdir(parents=True)
    policy = site.policy(
        allowed_roots=[
            protected / "sub",
            site.tmp / "home" / "Documents" / "scratch",
            site.state / "secrets",
            site.root,
        ],
        protected_paths=[protected],
    )
    assert policy.roots == (site.root, site.logs)
    assert [r.root for r in policy.refused_roots] == [
        protected / "sub",
        site.tmp / "home" / "Documents" / "scratch",
        site.state / "secrets",
    ]


def test_the_logs_directory_is_a_root_even_below_a_protected_path(site: Site) -> None:
    policy = site.policy(protected_paths=[site.tmp])
    assert site.logs in policy.roots
    assert policy.resolve(str(site.logs / "gateway.log")) == site.logs / "gateway.log"


# -- what may be named ---------------------------------------------------------------------


def test_empty_means_the_first_root_and_relative_paths_are_below_it(site: Site) -> None:
    write(site.root / "a" / "b.txt", b"b")
    policy = site.policy()
    assert policy.resolve("") == site.root
    assert policy.resolve("a/b.txt") == site.root / "a" / "b.txt"
    assert policy.resolve(str(site.root / "a")) == site.root / "a"
    assert policy.resolve("a/../a/./b.txt") == site.root / "a" / "b.txt"
    assert policy.resolve("/" + str(site.root)) == site.root  # "//root": one root, one spelling


def test_a_symlink_that_stays_inside_a_root_resolves_to_its_target(site: Site) -> None:
    target = write(site.root / "data" / "real.bin", b"x")
    (site.root / "alias").symlink_to(site.root / "data")
    assert site.policy().resolve("alias/real.bin") == target


def test_names_that_only_resemble_protected_ones_are_allowed(site: Site) -> None:
    # The original matched string prefixes: /usrdata was blocked, /home/u/Documents/x was not.
    for name in ("usrdata", "MyDocuments", "Documents.txt", "etc-backup", "sysfs-notes"):
        (site.root / name).mkdir()
    policy = site.policy(protected_paths=[site.root / "usr", site.root / "etc", site.root / "sys"])
    for name in ("usrdata", "MyDocuments", "Documents.txt", "etc-backup", "sysfs-notes"):
        assert policy.resolve(name) == site.root / name


def test_missing_paths_and_wrong_kinds_are_invalid_arguments(site: Site) -> None:
    write(site.root / "file.txt", b"x")
    policy = site.policy()
    with pytest.raises(InvalidPathError) as missing:
        policy.resolve("nothing/here", field="limits.path")
    assert (missing.value.field, missing.value.reason) == (
        "limits.path",
        "no such file or directory",
    )
    with pytest.raises(InvalidPathError, match="not a directory"):
        policy.resolve_dir("file.txt")


def test_no_root_at_all_refuses_everything(site: Site) -> None:
    policy = PathPolicy(
        site.settings(allowed_roots=[site.tmp / "missing"]),
        state_dir=site.state,
        logs_dir=site.tmp / "no-logs",
    )
    assert policy.roots == ()
    with pytest.raises(PathRefusedError, match="no allowed root"):
        policy.resolve("")


# -- attacks ---------------------------------------------------------------------------------

MALFORMED = [
    pytest.param("%2e%2e/outside/secret.txt", id="percent-encoded-dotdot"),
    pytest.param("%2E%2E%2Foutside", id="percent-encoded-upper-with-slash"),
    pytest.param("..%2foutside%2fsecret.txt", id="percent-encoded-slash"),
    pytest.param("%252e%252e/outside", id="double-encoded"),
    pytest.param("a/%2e/b", id="percent-encoded-dot"),
    pytest.param("..%5coutside", id="percent-encoded-backslash"),
    pytest.param("secret%00.txt", id="percent-encoded-nul"),
    pytest.param("%EF%BC%8E%EF%BC%8E/outside", id="percent-encoded-fullwidth-dots"),
    pytest.param("\uff0e\uff0e/outside/secret.txt", id="fullwidth-dots"),
    pytest.param("\u2025/outside", id="two-dot-leader"),
    pytest.param("\u2024\u2024/outside", id="one-dot-leaders"),
    pytest.param("..\u2215outside\u2215secret.txt", id="division-slash"),
    pytest.param("..\uff0foutside", id="fullwidth-solidus"),
    pytest.param("..\\outside", id="backslash"),
    pytest.param("secret.txt\x00.log", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("\ud800", id="not-utf8"),
    pytest.param("a/" * 2100, id="too-long"),
    pytest.param("x" * 256, id="component-too-long"),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_paths_are_invalid_arguments_before_anything_is_looked_at(
    site: Site, raw: str
) -> None:
    (site.root / "link").symlink_to(site.outside)
    untouched = Untouched.capture(site.outside)
    with pytest.raises(InvalidPathError) as refused:
        site.policy().resolve(raw)
    assert refused.value.field == "path"
    untouched.check()


def _outside_attempts(site: Site) -> list[str]:
    (site.root / "sub").mkdir()
    (site.root / "file-link").symlink_to(site.outside / "secret.txt")
    (site.root / "dir-link").symlink_to(site.outside)
    (site.root / "sub" / "relative-link").symlink_to(Path("..") / ".." / "outside")
    (site.root / "dangling-link").symlink_to(site.outside / "does-not-exist")
    (site.root / "state-link").symlink_to(site.state)
    (site.root / "Documents").mkdir()
    write(site.root / "Documents" / "sub" / "dir" / "x.txt", b"private")
    (site.root / "docs-link").symlink_to(site.root / "Documents")
    return [
        "..",
        "../outside/secret.txt",
        "sub/../../outside",
        str(site.root / ".." / "outside"),
        str(site.outside),
        str(site.outside / "secret.txt"),
        "/etc/passwd",
        "/",
        "file-link",
        "dir-link",
        "dir-link/secret.txt",
        "dir-link/nested",
        "sub/relative-link/secret.txt",
        "dangling-link",
        "state-link/secrets/key",
        str(site.state / "secrets" / "key"),
        str(site.state),
        "Documents",
        "Documents/sub/dir",
        "Documents/sub/dir/x.txt",
        "docs-link/sub",
        "sub/../Documents/sub",
    ]


def test_every_path_outside_or_protected_is_refused_and_nothing_outside_is_read(
    site: Site,
) -> None:
    attempts = _outside_attempts(site)
    untouched = Untouched.capture(site.outside)
    policy = site.policy()
    for raw in attempts:
        with pytest.raises(PathRefusedError):
            policy.resolve(raw)
        with pytest.raises(PathRefusedError):
            policy.resolve_dir(raw)
    untouched.check()


def test_refusals_do_not_say_where_a_symlink_points(site: Site) -> None:
    (site.root / "dir-link").symlink_to(site.outside)
    with pytest.raises(PathRefusedError) as refused:
        site.policy().resolve("dir-link")
    assert "outside" in refused.value.reason
    assert str(site.outside) not in str(refused.value)


def test_protected_paths_are_matched_as_whole_components(site: Site) -> None:
    policy = site.policy(allowed_roots=[Path("/")])
    for refused in (
        "/etc/passwd",
        "/etc",
        "/usr/lib/python3",
        "/lib64/x",
        "/var/lib/dpkg",
        "/proc/self/environ",
        "/home/u/Documents/sub/dir",
        "/home/u/.ssh/id_ed25519",
        str(site.state / "secrets"),
    ):
        assert policy.refusal(Path(refused)) is not None, refused
    for allowed in ("/usrdata/x", "/libx/y", "/var/library/z", "/home/u/MyDocuments/a", "/etcd"):
        assert policy.refusal(Path(allowed)) is None, allowed


# -- check_file ------------------------------------------------------------------------------


def test_check_file_accepts_a_regular_file_under_a_root(site: Site) -> None:
    site.policy().check_file(write(site.root / "a" / "f.tmp", b"x"))


def test_check_file_refuses_symlinks_directories_and_special_files(site: Site) -> None:
    (site.root / "link").symlink_to(site.outside / "secret.txt")
    (site.root / "inner-link").symlink_to(write(site.root / "real", b"x"))
    (site.root / "dir").mkdir()
    os.mkfifo(site.root / "fifo")
    untouched = Untouched.capture(site.outside)
    policy = site.policy()
    for name in ("link", "inner-link", "dir", "fifo"):
        with pytest.raises(PathRefusedError):
            policy.check_file(site.root / name)
    with pytest.raises(InvalidPathError, match="no such file"):
        policy.check_file(site.root / "gone")
    with pytest.raises(PathRefusedError):
        policy.check_file(Path("relative/file"))
    untouched.check()


def test_check_file_refuses_a_file_whose_directory_became_a_symlink_out(site: Site) -> None:
    victim = write(site.root / "sub" / "secret.txt", b"mine")
    policy = site.policy()
    policy.check_file(victim)
    # After the scan, the directory is swapped for a symlink to a directory outside.
    (site.root / "sub").rename(site.root / "moved")
    (site.root / "sub").symlink_to(site.outside)
    with pytest.raises(PathRefusedError, match="outside"):
        policy.check_file(victim)


def test_check_file_refuses_protected_and_state_files(site: Site) -> None:
    protected = write(site.root / "Desktop" / "note.txt", b"x")
    policy = site.policy(allowed_roots=[site.root, site.tmp])
    with pytest.raises(PathRefusedError, match="protected"):
        policy.check_file(protected)
    with pytest.raises(PathRefusedError, match="state directory"):
        policy.check_file(site.state / "secrets" / "key")
    policy.check_file(site.logs / "gateway.log")
