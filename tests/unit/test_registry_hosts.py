"""No package registry's address in the repository: every fetch goes through the machine's own
client configuration (Maven settings, GOPROXY, pip's index), so mirrors and proxies apply."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Written with character classes so that this file does not match itself.
REGISTRY_HOSTS = re.compile(
    r"maven[2]|repo1?\.maven|proxy\.golang|sum\.golang|pypi\.org|files\.pythonhosted"
    r"|deb\.debian|registry\.npmjs|crates\.io",
    re.IGNORECASE,
)


def repository_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (so an uncommitted file counts too)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_registry_host_in_the_repository() -> None:
    files = repository_files()
    assert any(f.name == "build.py" for f in files), "git listed none of dev/stack_lib"
    hits = []
    for path in files:
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if REGISTRY_HOSTS.search(line):
                hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert hits == []


def test_the_pattern_finds_a_registry_host() -> None:
    """The check itself sees what it must see (a pattern that matches nothing would pass)."""
    assert REGISTRY_HOSTS.search("GOPROXY=https://proxy" + ".golang.org,direct")
    assert REGISTRY_HOSTS.search("https://repo" + ".maven.apache.org/maven" + "2")
    assert not REGISTRY_HOSTS.search("mvn dependency:copy -Dartifact=org.apache.pulsar:x:1")
