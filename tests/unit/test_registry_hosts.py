"""No package registry's address in the repository: every fetch goes through the machine's own
client configuration (Maven settings, GOPROXY, pip's index), so mirrors and proxies apply."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Written with character classes so that this file does not match itself.
REGISTRY_HOSTS = re.compile(
    r"maven[2]|repo1?\.maven|proxy\.golang|sum\.golang|pypi\.org|files\.pythonhosted"
    r"|deb\.debian|registry\.npmjs|crates\.io",
    re.IGNORECASE,
)


def ignored(rel: Path, patterns: list[str]) -> bool:
    """The top-level .gitignore's patterns (`name/` a folder anywhere, `a/b/` a path)."""
    for pattern in patterns:
        bare = pattern.rstrip("/")
        if "/" in bare:
            if rel.as_posix() == bare or rel.as_posix().startswith(bare + "/"):
                return True
        elif any(fnmatch.fnmatch(part, bare) for part in rel.parts):
            return True
    return False


def repository_files() -> list[Path]:
    """The files git would track: the tree without .git, what .gitignore names, and folders
    that ignore themselves (tool caches with a `*` .gitignore). Read from disk, no git call."""
    patterns = [
        line.strip()
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = []
    for root, dirs, names in os.walk(REPO):
        here = Path(root)
        dirs[:] = [
            d
            for d in dirs
            if d != ".git"
            and not ignored((here / d).relative_to(REPO), patterns)
            and not self_ignoring(here / d)
        ]
        files += [here / n for n in names if not ignored((here / n).relative_to(REPO), patterns)]
    return files


def self_ignoring(folder: Path) -> bool:
    marker = folder / ".gitignore"
    return marker.is_file() and "*" in marker.read_text().split()


def test_no_registry_host_in_the_repository() -> None:
    files = repository_files()
    assert REPO / "dev" / "stack_lib" / "build.py" in files
    assert not any(".venv" in f.parts for f in files), "the venv is not the repository"
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
