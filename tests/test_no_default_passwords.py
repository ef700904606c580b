"""No password or key is written down in the product: every secret is generated at first start."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Product code, configuration and docs. Tests generate their credentials at run time as well,
# but name fixed throw-away values (a wrong password), so they are not scanned.
SCANNED = (
    "services",
    "runtime",
    "client",
    "ops",
    "gateway",
    "tui",
    "envoy",
    "nats",
    "deploy",
    "protos/sutazai",
    "docs",
)
CONFIG_SUFFIXES = {".template", ".toml", ".yaml", ".yml", ".conf", ".sql"}

KNOWN_DEFAULTS = re.compile(r"(?i)admin123|changeme|hunter2|password123|letmein|secret123")
# Python: a credential-named variable or argument given a string literal.
PY_ASSIGNMENT = re.compile(r"""\b(password|passwd|secret|api_key)\s*=\s*[rb]?["'][^"']+["']""")
# Configuration: a credential directive or key given a literal (templates use placeholders).
CONFIG_ASSIGNMENT = re.compile(
    r"""(?i)(\brequirepass\s+|\b(password|passwd|secret|api_key)["']?\s*[:=]\s*)["']?(?![$<{])\w{4,}"""
)


def product_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *SCANNED, "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_the_product_holds_no_literal_credentials() -> None:
    files = product_files()
    names = {f.name for f in files}
    assert {"settings.py", "server.conf.template", "bootstrap.yaml"} <= names, "scan too narrow"
    findings = []
    for path in files:
        if path.suffix == ".py":
            pattern = PY_ASSIGNMENT
        elif path.suffix in CONFIG_SUFFIXES:
            pattern = CONFIG_ASSIGNMENT
        else:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if KNOWN_DEFAULTS.search(line) or pattern.search(line):
                findings.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert findings == []


def test_the_scan_catches_a_written_down_password() -> None:
    assert PY_ASSIGNMENT.search('connect(user="sutazai", password="s3cr3t-pw")')
    assert not PY_ASSIGNMENT.search('password = f"{secrets.token_urlsafe(12)}"')
    assert CONFIG_ASSIGNMENT.search('password: "s3cr3t-pw"')
    assert CONFIG_ASSIGNMENT.search("requirepass hunter22")
    assert not CONFIG_ASSIGNMENT.search("requirepass $redis_password")
    assert KNOWN_DEFAULTS.search("admin / admin123")
