"""Ceph through its CLI with JSON output: every call bounded, every answer parsed.

The `ceph` CLI is the stable interface (the rados bindings exist only for the system Python). A mon
that is down makes every command hang and a missing mgr hangs the mgr-served ones (pg stat, ok-to-stop,
safe-to-destroy): each call has a connect timeout and a process timeout. Some commands answer
"not safe" through their JSON with exit code 0 (`safe-to-destroy -f json`): their lists are read.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.core.errors import Failed
from atlas.core.model import Device
from atlas.core.run import poll_until

EBUSY = 16


class CephError(Failed):
    pass


@dataclass(frozen=True)
class PgSummary:
    states: dict[str, int]  # "active+clean" -> count
    total: int

    @property
    def clean(self) -> bool:
        return self.total > 0 and set(self.states) == {"active+clean"}

    @property
    def inactive(self) -> int:
        return sum(n for state, n in self.states.items() if "active" not in state.split("+"))

    def __str__(self) -> str:
        return ", ".join(f"{n} {state}" for state, n in sorted(self.states.items())) or "no PGs"


@dataclass(frozen=True)
class Ceph:
    conf: Path
    timeout: float = 20.0

    def _run(self, args: tuple[str, ...], stdin: str | None, ok_codes: tuple[int, ...], as_json: bool) -> str:
        argv = ["ceph", "--conf", str(self.conf), "--connect-timeout", str(int(self.timeout)), *args]
        try:
            done = subprocess.run(
                [*argv, *(["-f", "json"] if as_json else [])],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout + 5,
            )
        except subprocess.TimeoutExpired:
            raise CephError(f"`ceph {' '.join(args)}` did not answer within {self.timeout:.0f} s") from None
        if done.returncode not in ok_codes:
            raise CephError(f"`ceph {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def call(self, *args: str, stdin: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> Any:
        """One `ceph` command; its JSON answer, or None when it prints nothing."""
        out = self._run(args, stdin, ok_codes, as_json=True)
        return json.loads(out) if out.strip() else None

    # --- reads ----------------------------------------------------------------------------------
    def health(self) -> tuple[str, list[str]]:
        """("HEALTH_OK" | "HEALTH_WARN" | "HEALTH_ERR", the checks' summaries)."""
        doc = self.call("health", "detail")
        checks = [f"{name}: {c['summary']['message']}" for name, c in sorted(doc.get("checks", {}).items())]
        return str(doc["status"]), checks

    def pgs(self) -> PgSummary:
        summary = self.call("pg", "stat")["pg_summary"]
        states = {str(s["name"]): int(s["num"]) for s in summary.get("num_pg_by_state", [])}
        return PgSummary(states=states, total=int(summary.get("num_pgs", 0)))

    def osd_epoch(self) -> int:
        return int(self.call("osd", "dump")["epoch"])

    def osds(self) -> dict[int, dict[str, Any]]:
        """Per OSD id: up, in, and its CRUSH weight and host."""
        dump = self.call("osd", "dump")
        tree = self.call("osd", "tree")
        host_of = {
            child: n["name"] for n in tree["nodes"] if n["type"] == "host" for child in n.get("children", [])
        }
        weight = {n["id"]: float(n["crush_weight"]) for n in tree["nodes"] if n["type"] == "osd"}
        return {
            int(o["osd"]): {
                "up": bool(o["up"]),
                "in": bool(o["in"]),
                "weight": weight.get(o["osd"], 0.0),
                "host": host_of.get(o["osd"]),
            }
            for o in dump["osds"]
        }

    def flags(self) -> set[str]:
        """Cluster-wide OSD map flags (noout, norebalance, ...)."""
        return set(str(self.call("osd", "dump").get("flags", "")).split(",")) - {""}

    def group_flags(self) -> dict[str, set[str]]:
        """CRUSH buckets with flags of their own (`set-group noout rack1`)."""
        nodes = self.call("osd", "dump").get("crush_node_flags", {})
        return {str(name): set(flags) for name, flags in nodes.items()}

    def minimal_conf(self) -> str:
        """What a host needs to find the cluster: fsid and mon addresses."""
        return self._run(("config", "generate-minimal-conf"), None, (0,), as_json=False)

    def keyring(self, entity: str) -> str:
        """The keyring text of an entity (e.g. client.bootstrap-osd); a secret, never logged."""
        [answer] = self.call("auth", "get", entity)
        return f"[{answer['entity']}]\n\tkey = {answer['key']}\n"

    # --- maintenance ----------------------------------------------------------------------------
    def buckets(self) -> set[str]:
        """Names of the CRUSH buckets (hosts, racks, datacenters, root)."""
        return {str(n["name"]) for n in self.call("osd", "tree")["nodes"] if n["type"] != "osd"}

    def set_group_noout(self, buckets: list[str]) -> None:
        self.call("osd", "set-group", "noout", *buckets)

    def unset_group_noout(self, buckets: list[str]) -> None:
        self.call("osd", "unset-group", "noout", *buckets)

    def ok_to_stop(self, osd_ids: list[int]) -> tuple[bool, str]:
        """Whether stopping these OSDs keeps every PG active (EBUSY means no, with the reason)."""
        answer = self.call("osd", "ok-to-stop", *map(str, osd_ids), ok_codes=(0, EBUSY))
        ok = bool(answer and answer.get("ok_to_stop"))
        bad = (answer or {}).get("bad_become_inactive", [])
        return ok, "" if ok else f"{len(bad)} PG(s) would become inactive"

    def safe_to_destroy(self, osd_ids: list[int]) -> list[int]:
        """The ids among these that can go without losing data (the exit code says nothing)."""
        answer = self.call("osd", "safe-to-destroy", *map(str, osd_ids))
        return sorted(int(i) for i in (answer or {}).get("safe_to_destroy", []))

    def crush_reweight(self, osd_id: int, weight: float) -> None:
        self.call("osd", "crush", "reweight", f"osd.{osd_id}", f"{weight:.6f}")

    def wait_clean(
        self,
        timeout: float = 300.0,
        stable: float = 3.0,
        poll: float = 0.5,
        abort: Callable[[], str | None] | None = None,
    ) -> None:
        """Until every PG is active+clean and the OSD map epoch has not moved for `stable` seconds:
        PG states come from the mgr and lag the map, so "clean" right after a change means nothing.
        `abort` is asked on every poll; a reason from it stops the wait with that reason."""
        epoch, clean_since = -1, None

        def clean_for() -> tuple[float, PgSummary]:
            """How long the PGs have been clean on an unchanged OSD map, and the PGs as read now."""
            nonlocal epoch, clean_since
            reason = abort() if abort is not None else None
            if reason:
                raise CephError(reason)
            now_epoch, pgs = self.osd_epoch(), self.pgs()
            now = time.monotonic()
            if now_epoch != epoch or not pgs.clean:
                epoch, clean_since = now_epoch, None
            if pgs.clean and clean_since is None:
                clean_since = now
            return (now - clean_since if clean_since is not None else -1.0), pgs

        seconds, pgs = poll_until(clean_for, lambda found: found[0] >= stable, timeout, pause=poll)
        if seconds < stable:
            raise CephError(f"PGs not clean within {timeout:.0f} s: {pgs}")


def crush_location(host: Device) -> str:
    """Where NetBox puts the host: root default -> datacenter (its site) -> rack -> host."""
    return f"root=default datacenter={host.site} rack={host.rack} host={host.name}"


def osd_host_conf(minimal_conf: str, host: Device, address: str, initial_weight: float | None) -> str:
    """A storage host's /etc/ceph/ceph.conf: the cluster's minimal conf (`config generate-minimal-conf`),
    the host's own address (its management address) and CRUSH location, and the weight its new OSDs join with (0 keeps data off
    them until the ramp)."""
    osd = [
        "[osd]",
        "keyring = $osd_data/keyring",
        f"crush_location = {crush_location(host)}",
        "osd_objectstore = bluestore",
        "bluestore_fsck_on_mkfs = false",
    ]
    if initial_weight is not None:
        osd.append(f"osd_crush_initial_weight = {initial_weight}")
    ip = address
    return "\n".join(
        [
            minimal_conf.strip(),
            f"\tpublic_addr = {ip}",
            f"\tcluster_addr = {ip}",
            "\trun_dir = /run/ceph",
            "\tlog_file = /var/log/ceph/$cluster-$name.log",
            "\tpid_file = /run/ceph/$cluster-$name.pid",
            "",
            *osd,
            "",
        ]
    )
