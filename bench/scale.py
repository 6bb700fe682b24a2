"""A full-size datacenter in the lab: 12 racks x 20 servers, 24 leaves, 4 spines in one site, every rack
in service. Boots it from nothing, configures its switches with fabric-apply, runs the configuration-
consistency sweep over every device (switches, hosts, cabling) and prints boot time, sweep time,
memory (proportional set size of the fabric's and of the lab servers' processes) and the sweep's time
per device against the default lab's shape, measured the same way in the same run. The first boot of
a shape imports it into NetBox (minutes at full size); later boots restore that import from the
cache, and the table says which it was. Prints; asserts nothing (these machines are shared and noisy).

    .venv/bin/python bench/scale.py [--only-scale]

Servers are all compute servers: Ceph's daemons would measure Ceph, not the lab or the sweep (the lab
runs OSDs on the storage servers of racks in service). Uses its own lab name, ports and addresses, so
it runs beside a demo or test lab; removes its lab afterwards.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from atlas.lab import procs
from atlas.lab.config import DEFAULT_ROOT, LAB_DIR_VARIABLE, LabConfig
from atlas.lab.generate import SITE_NAMES, LabShape, generate, write
from atlas.lab.lab import Lab, UpReport
from flows.config_sweep import config_sweep
from flows.fabric import fabric_apply

DEFAULT = LabShape(
    mgmt=IPv4Network("198.18.20.0/22"),
    loopbacks=IPv4Network("198.19.20.0/22"),
    fabric=IPv4Network("198.19.192.0/18"),
)
FULL_SIZE = replace(DEFAULT, sites=1, spines=4, racks=12, compute=20, storage=0, active_racks=12)


@dataclass
class Measured:
    shape: str
    nodes: int
    boot_s: float
    imported: bool  # NetBox's import in the boot, or restored from the cache of an earlier one
    apply_s: float
    sweep_s: float
    swept: int
    fabric_mib: float
    servers_mib: float

    @property
    def per_device_ms(self) -> float:
        return 1000 * self.sweep_s / self.swept


def pss_mib(pids: list[int]) -> float:
    """Proportional set size: shared pages split among their users, so a sum over processes is honest."""
    total_kib = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kib += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return total_kib / 1024


def sites_of(shape: LabShape) -> list[str]:
    return [*SITE_NAMES[: shape.sites], *(["core"] if shape.core else [])]


def timed(action: object) -> float:
    t0 = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - t0


def measure(label: str, shape: LabShape) -> Measured:
    topology = DEFAULT_ROOT / "ascale" / "topology"
    lab = Lab(LabConfig(name="ascale", port_base=29400, topology=topology, schedules=False))
    lab.down()
    write(generate(shape), topology)
    try:
        print(f"{label}: booting", flush=True)
        reports: list[UpReport] = []
        boot = timed(lambda: reports.append(lab.up(lambda step: print(f"  {step}", flush=True))))
        imported = "restored from" not in reports[0].imported
        nodes = lab.nodes_on_record()
        fabric_pids = procs.in_network_namespaces([Path("/run/netns") / n for n in lab.fabric.namespaces()])
        server_pids = set(procs.marked(LAB_DIR_VARIABLE, str(lab.cfg.dir))) - set(fabric_pids)
        postgres = procs.read_pid(lab.cfg.dir / "netbox" / "pg" / "postmaster.pid")
        server_pids |= {postgres} if postgres else set()
        os.environ.update(lab.env())
        with temporary_settings({PREFECT_API_URL: lab.cfg.prefect_url}):
            print(f"{label}: fabric-apply", flush=True)
            apply = timed(lambda: [fabric_apply(site=site, dry_run=False) for site in sites_of(shape)])
            print(f"{label}: config-sweep", flush=True)
            found: list[object] = []
            sweep = timed(lambda: found.extend(config_sweep()))
        swept = len({r.target for r in found})  # type: ignore[attr-defined]
        return Measured(
            label,
            len(nodes),
            boot,
            imported,
            apply,
            sweep,
            swept,
            pss_mib(fabric_pids),
            pss_mib(sorted(server_pids)),
        )
    finally:
        lab.down()


def main() -> None:
    results = [] if "--only-scale" in sys.argv else [measure("default lab", DEFAULT)]
    results.append(measure("full-size datacenter", FULL_SIZE))
    print()
    print(
        f"{'':<22}{'nodes':>6}{'boot s':>9}{'apply s':>9}{'sweep s':>9}{'devices':>9}{'ms/device':>11}"
        f"{'fabric MiB':>12}{'servers MiB':>13}"
    )
    for m in results:
        print(
            f"{m.shape:<22}{m.nodes:>6}{m.boot_s:>9.1f}{m.apply_s:>9.1f}{m.sweep_s:>9.1f}{m.swept:>9}"
            f"{m.per_device_ms:>11.0f}{m.fabric_mib:>12.0f}{m.servers_mib:>13.0f}"
            f"  {'NetBox import included' if m.imported else 'NetBox restored from the import cache'}"
        )
    if len(results) == 2:
        small, big = results
        print(
            f"sweep time per device, full-size / default = {big.per_device_ms / small.per_device_ms:.2f}; "
            f"fabric memory per node, full-size / default = "
            f"{(big.fabric_mib / big.nodes) / (small.fabric_mib / small.nodes):.2f}"
        )


if __name__ == "__main__":
    main()
