"""Power-on to active: a rack whose servers are all powered off with blank disks, brought up by
rack-bringup (BMCs asked and checked against NetBox, each server booted once from the network into the
OS image NetBox names and waited for, then the switches, host baseline and NetBox), for a rack of 3
servers and one of 6. Prints the whole run and each phase (the run's Prefect task runs); goal:
6 servers / 3 servers <= 1.3, the phases running across servers in parallel.

Each lab is booted for the benchmark beside any other lab, on its own ports and addresses, and removed
afterwards. Prints; asserts nothing.

    .venv/bin/python bench/power_on.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Network

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from atlas.lab.config import DEFAULT_ROOT, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.images import OS_IMAGE_VERSION
from atlas.lab.lab import Lab
from atlas.sot.client import connect
from atlas.sot.schema import OS_IMAGE_FIELD
from flows.rack_bringup import rack_bringup

THREE = LabShape(
    sites=1,
    compute=2,
    storage=1,
    mgmt=IPv4Network("198.18.16.0/22"),
    loopbacks=IPv4Network("198.19.16.0/22"),
    fabric=IPv4Network("198.19.128.0/18"),
)
SIX = replace(THREE, compute=4, storage=2)
SHAPES = {"3": ("apower", 29400, THREE), "6": ("apower2", 29500, SIX)}
RACK = "fra1-r02"


def measure(name: str, port_base: int, shape: LabShape) -> dict[str, float]:
    topology = DEFAULT_ROOT / name / "topology"
    lab = Lab(LabConfig(name=name, port_base=port_base, topology=topology, schedules=False))
    lab.down()
    write(generate(shape), topology)
    try:
        lab.up()
        os.environ.update(lab.env())
        with temporary_settings({PREFECT_API_URL: lab.cfg.prefect_url}):
            if rack_bringup(site="fra1", rack="fra1-r01", dry_run=False).failed:  # the peer rack
                raise SystemExit("bring-up of fra1-r01 failed")
            servers = [n for n in lab.nodes_on_record() if n.startswith(f"{RACK}-") and "leaf" not in n]
            nb = connect(lab.cfg.netbox_url, lab.secrets.netbox_token)
            for server in servers:  # racked, cabled, powered off, no operating system
                lab.wipe(server)
                device = nb.dcim.devices.get(name=server)
                device.custom_fields = {**device.custom_fields, OS_IMAGE_FIELD: OS_IMAGE_VERSION}
                device.save()
            t0 = time.perf_counter()
            state = rack_bringup(site="fra1", rack=RACK, dry_run=False, return_state=True)
            total = time.perf_counter() - t0
            report = state.result()
            if report.failed:
                raise SystemExit(f"bring-up of {RACK} failed: {report.rows}")
            with get_client(sync_client=True) as client:
                runs = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
                )
    finally:
        lab.down()
    phases: dict[str, float] = {"total": total}
    for run in runs:
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]
            phases[name] = phases.get(name, 0.0) + (run.end_time - run.start_time).total_seconds()
    return phases


def main() -> None:
    """Each lab is measured in a process of its own: Prefect's client services bind to one API."""
    if len(sys.argv) == 2:
        print(json.dumps(measure(*SHAPES[sys.argv[1]])))
        return
    times = {}
    for size in SHAPES:
        out = subprocess.run([sys.executable, __file__, size], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the {size}-server lab's measurement failed:\n{out.stderr[-3000:]}")
        times[size] = json.loads(out.stdout.strip().splitlines()[-1])
    three, six = times["3"], times["6"]
    print(f"{'phase':40} {'3 servers':>10} {'6 servers':>10}")
    for phase in sorted(set(three) | set(six), key=lambda p: (p != "total", -three.get(p, 0.0))):
        print(f"{phase:40} {three.get(phase, 0.0):9.2f}s {six.get(phase, 0.0):9.2f}s")
    print(f"6 servers / 3 servers: {six['total'] / three['total']:.3f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
