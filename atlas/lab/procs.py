"""Processes the lab starts: by PID file, checked by command line, stopped by PID only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StartError(RuntimeError):
    pass


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # A killed child of a dead parent stays a zombie until init reaps it: it is dead to us.
    return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def running(pidfile: Path, marker: str) -> int | None:
    """The PID in `pidfile` if that process is alive and still the one we started."""
    pid = read_pid(pidfile)
    if pid is not None and alive(pid) and marker in cmdline(pid):
        return pid
    return None


def spawn(
    argv: Sequence[str],
    pidfile: Path,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Starts a long-running process in its own session and records its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pids: Sequence[int], grace: float = 5.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left."""
    targets = [p for p in pids if alive(p)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in targets):
        time.sleep(0.05)
    for pid in targets:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in targets):
        time.sleep(0.05)


def in_network_namespaces(namespace_files: list[Path]) -> list[int]:
    """Live processes inside any of these network namespaces (what `ip netns pids` tells)."""
    inodes = set()
    for f in namespace_files:
        with contextlib.suppress(OSError):
            inodes.add(f.stat().st_ino)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            inode = (entry / "ns" / "net").stat().st_ino
        except OSError:
            continue
        if inode in inodes and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def marked(variable: str, value: str) -> list[int]:
    """Live processes started with `variable=value` in their environment (daemons that rewrite their
    process title, such as sshd, lldpd and redis, overwrite it and are not found this way)."""
    needle = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def stop_pidfile(pidfile: Path, marker: str, grace: float = 5.0) -> bool:
    pid = running(pidfile, marker)
    pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    stop([pid], grace)
    return True


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    log: Path | None = None,
    pid: int | None = None,
) -> None:
    """Polls `check` until it holds; fails at once if the process `pid` has exited."""
    deadline = time.monotonic() + timeout
    problem = f"did not become ready within {timeout:.0f} s"
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not alive(pid):
            problem = "exited during start-up"
            break
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise StartError(f"{what} {problem}{tail}")


def run(
    argv: Sequence[str],
    what: str,
    env: dict[str, str] | None = None,
    timeout: float | None = 600,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        input=input,
        cwd=cwd,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise StartError(f"{what} failed (exit {result.returncode}): {detail}")
    return result
