"""Rack bring-up times: first run, re-run (goal: re-run / first <= 0.10; the median of three re-runs),
and a rack with twice the servers against the default rack (goal <= 1.3). Each lab is booted for the
benchmark beside any other lab, on its own ports and addresses, and removed afterwards. Prints;
asserts nothing.

    .venv/bin/python bench/bringup.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Network

from prefect.settings import PREFECT_API_URL, temporary_settings

from atlas.lab.config import DEFAULT_ROOT, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from flows.rack_bringup import rack_bringup

DEFAULT = LabShape(
    sites=1,
    mgmt=IPv4Network("198.18.16.0/22"),
    loopbacks=IPv4Network("198.19.16.0/22"),
    fabric=IPv4Network("198.19.128.0/18"),
)
DOUBLE = replace(DEFAULT, compute=DEFAULT.compute * 2, storage=DEFAULT.storage * 2)


def bringup_seconds(lab: Lab, rack: str) -> float:
    os.environ.update(lab.env())
    with temporary_settings({PREFECT_API_URL: lab.cfg.prefect_url}):
        t0 = time.perf_counter()
        report = rack_bringup(site="fra1", rack=rack, dry_run=False)
        seconds = time.perf_counter() - t0
    if report.failed:
        raise SystemExit(f"bring-up of {rack} failed: {report.rows}")
    return seconds


def measure(name: str, port_base: int, shape: LabShape) -> tuple[float, list[float]]:
    topology = DEFAULT_ROOT / name / "topology"
    lab = Lab(LabConfig(name=name, port_base=port_base, topology=topology, schedules=False))
    lab.down()
    write(generate(shape), topology)
    try:
        lab.up()
        bringup_seconds(lab, "fra1-r01")  # the site's active rack, as the lab's NetBox says
        first = bringup_seconds(lab, "fra1-r02")
        # a re-run is short enough for the machine's noise to matter: three of them, the median counts
        again = [bringup_seconds(lab, "fra1-r02") for _ in range(RERUNS)]
    finally:
        lab.down()
    return first, again


RERUNS = 3
SHAPES = {"default": ("abring", 29400, DEFAULT), "double": ("abring2", 29500, DOUBLE)}


def main() -> None:
    """Each lab is measured in a process of its own: Prefect's client services bind to one API."""
    if len(sys.argv) == 2:
        first, again = measure(*SHAPES[sys.argv[1]])
        print(json.dumps({"first": first, "again": again}))
        return
    times = {}
    for shape in SHAPES:
        out = subprocess.run([sys.executable, __file__, shape], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the {shape} lab's measurement failed:\n{out.stderr[-3000:]}")
        times[shape] = json.loads(out.stdout.strip().splitlines()[-1])
    first, double = times["default"]["first"], times["double"]["first"]
    again = statistics.median(times["default"]["again"])
    servers = DEFAULT.compute + DEFAULT.storage
    print(f"first bring-up of a rack ({servers} servers)   {first:7.2f} s")
    print(
        f"re-run on the converged rack             {again:7.2f} s   ratio {again / first:.3f} (goal <= 0.10)"
        f"   median of {', '.join(f'{t:.2f}' for t in times['default']['again'])} s"
    )
    print(
        f"first bring-up, {2 * servers} servers                {double:7.2f} s   ratio {double / first:.3f} (goal <= 1.3)"
    )


if __name__ == "__main__":
    main()
