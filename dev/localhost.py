"""What the dev tools ask of this machine: free ports, whether a pid lives, and /proc reads.

One copy for dev/stack, the Lambda gateway and the tests (stdlib only).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (32768+): no outgoing connection takes the port between the
# check and the server's bind.
PORT_RANGE = range(20000, 32000)


def free_port(preferred: int | None = None, host: str = LOOPBACK) -> int:
    """`preferred` if it is free on `host`, else a random free port of PORT_RANGE."""
    candidates = random.sample(PORT_RANGE, 200)
    if preferred is not None:
        candidates.insert(0, preferred)
    for port in candidates:
        with socket.socket() as s:
            # SO_REUSEADDR like the servers themselves: TIME_WAIT leftovers do not count as busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host} in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Something accepts connections on host:port."""
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3, the state, first); None if gone.

    The command name may hold spaces and parentheses, so the split is at the last ')'.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (an unreaped child of ours counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    return stat is None or stat[0] != "Z"


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot), to tell a pid from a
    reused one."""
    stat = proc_stat(pid)
    return stat[19] if stat else None


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) of every process."""
    table: dict[int, tuple[int, int, str]] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        pid = int(path.parent.name)
        stat = proc_stat(pid)
        with contextlib.suppress(IndexError, ValueError):
            if stat:
                table[pid] = (int(stat[1]), int(stat[2]), stat[0])
    return table


def child_pids(parent: int) -> list[int]:
    """Direct children of `parent` (zombies included)."""
    return [pid for pid, (ppid, _, _) in proc_table().items() if ppid == parent]


def rss_kib(pid: int) -> int:
    """Resident memory of one process (KiB); 0 if it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
