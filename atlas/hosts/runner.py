"""Run a playbook on hosts with ansible-runner and turn its events into per-host Results.

Each run gets a private data directory that is removed afterwards, with env files suppressed: the
SSH key (from Vault) and the extra variables never stay on disk after the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from atlas.core.model import Credential
from atlas.core.run import Log, Result, Results

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
_HOST_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}
_SSH_CLOSING = re.compile(r"^(Shared connection|Connection) to \S+ closed\.?\s*$")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    variables: dict[str, Any] = field(default_factory=dict)


def _inventory(hosts: list[Host], key_file: Path) -> dict[str, Any]:
    return {
        "all": {
            "hosts": {h.name: {"ansible_host": h.address, **h.variables} for h in hosts},
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key_file),
                "ansible_python_interpreter": "/usr/bin/python3",
                # Fresh racks have no known host keys yet; pinning them from NetBox is later work.
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            },
        }
    }


def _diff_lines(diff: Any) -> list[str]:
    """Ansible diffs are before/after pairs of text or of attribute dicts; one short line each."""
    items = diff if isinstance(diff, list) else [diff] if diff else []
    lines = []
    for d in items:
        before, after = d.get("before", ""), d.get("after", "")
        where = d.get("after_header") or (after.get("path") if isinstance(after, dict) else "") or ""
        if isinstance(before, dict) and isinstance(after, dict):
            changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v and k != "path"}
            text = ", ".join(f"{k}: {b} -> {a}" for k, (b, a) in changed.items())
        else:
            text = f"{' '.join(str(before).split())[:120]!r} -> {' '.join(str(after).split())[:120]!r}"
        if before != after:
            lines.append(f"{where}: {text}" if where else text)
    return lines


WORKDIR_PREFIX = "atlas-ansible-"


def remove_orphaned_workdirs(root: Path | None = None) -> list[Path]:
    """A run killed mid-playbook cannot remove its private directory, which holds the SSH key it used:
    the next run removes every such directory whose process is gone."""
    removed = []
    for workdir in Path(root or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        owner = workdir.name.removeprefix(WORKDIR_PREFIX).split("-")[0]
        if not owner.isdigit() or not Path(f"/proc/{owner}").exists():
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
    return removed


def _last_words(res: dict[str, Any]) -> str:
    """What a failed command said last: its stderr, or its stdout (a script runs on a pty, which
    merges the two); never ssh's own closing message."""
    for stream in ("stderr", "stdout"):
        lines = [
            line
            for line in str(res.get(stream) or "").splitlines()
            if line.strip() and not _SSH_CLOSING.match(line)
        ]
        if lines:
            return lines[-1].strip()[:400]
    return ""


def run_playbook(
    playbook: str,
    hosts: list[Host],
    cred: Credential,
    check: bool = False,
    on_event: Log | None = None,
    forks: int | None = None,
) -> Results:
    """`forks` bounds the SSH sessions at once; by default every host of the run at once."""
    if not hosts:
        return Results()
    if not cred.ssh_private_key:
        raise ValueError("host credential has no SSH private key")
    remove_orphaned_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    try:
        key_file = workdir / "host_key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cred.ssh_private_key)
        (workdir / "inventory").mkdir()
        (workdir / "inventory" / "hosts.json").write_text(json.dumps(_inventory(hosts, key_file)))
        changed: dict[str, list[str]] = {h.name: [] for h in hosts}
        failed: dict[str, str] = {}
        seen: set[str] = set()

        def handle(event: dict[str, Any]) -> bool:
            if event.get("event") not in _HOST_EVENTS:
                return False
            data = event["event_data"]
            host, task, res = data.get("host", "?"), data.get("task", "?"), data.get("res", {})
            seen.add(host)
            if event["event"] in ("runner_on_failed", "runner_on_unreachable") and not data.get(
                "ignore_errors"
            ):
                why = _last_words(res)
                failed[host] = f"{task}: {res.get('msg', 'failed')}" + (f": {why}" if why else "")
            elif res.get("changed"):
                detail = _diff_lines(res.get("diff")) or [str(c) for c in res.get("commands", [])]
                changed.setdefault(host, []).append(f"{task}" + (f" ({'; '.join(detail)})" if detail else ""))
            if on_event is not None:
                state = "failed" if host in failed else "changed" if res.get("changed") else "ok"
                on_event(f"{host}: {task}: {state}")
            return False  # nothing is kept in the artifacts directory

        runner = ansible_runner.run(
            private_data_dir=str(workdir),
            project_dir=str(PLAYBOOKS),
            playbook=playbook,
            cmdline="--check --diff" if check else "--diff",
            event_handler=handle,
            quiet=True,
            suppress_env_files=True,
            envvars={
                "ANSIBLE_HOME": str(workdir / "ansible"),
                "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
                "ANSIBLE_LIBRARY": str(PLAYBOOKS / "library"),
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                # one SSH round trip per task instead of several
                "ANSIBLE_FORKS": str(forks or max(5, len(hosts))),
                "ANSIBLE_PIPELINING": "True",
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            },
        )
        if runner.rc != 0:
            # hosts the playbook never reached (no ansible-playbook, a syntax error) failed too;
            # a host that ran its tasks cleanly keeps its own result when another host failed
            reason = f"ansible-playbook ended {runner.status} (exit {runner.rc})"
            for h in hosts:
                if h.name not in seen:
                    failed.setdefault(h.name, reason)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Results(
        Result.failure(h.name, playbook, failed[h.name])
        if h.name in failed
        else Result(
            target=h.name,
            step=playbook,
            changed=bool(changed[h.name]),
            diff=tuple(changed[h.name]),
            detail=("would change" if check else "changed") if changed[h.name] else "already as intended",
        )
        for h in hosts
    )
