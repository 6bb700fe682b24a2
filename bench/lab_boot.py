"""Boot times of the default lab's shape: cold (from nothing, topology import included), warm (after
every process was ended, as a reboot or CI leaves it), and a no-op `up` on a running lab.

    .venv/bin/python bench/lab_boot.py

Uses its own lab name, ports and addresses, so it runs beside a demo or test lab. Prints times; asserts
nothing (these machines are shared and noisy).
"""

from __future__ import annotations

import time
from ipaddress import IPv4Network

from atlas.lab import procs
from atlas.lab.config import DEFAULT_ROOT, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab

SHAPE = LabShape(
    mgmt=IPv4Network("198.18.12.0/22"),
    loopbacks=IPv4Network("198.19.12.0/22"),
    fabric=IPv4Network("198.19.64.0/18"),
)
WARM_GOAL_S = 60.0


def kill_everything(lab: Lab) -> None:
    pids = [p for f in lab.cfg.dir.rglob("*.pid") if (p := procs.read_pid(f)) and procs.alive(p)]
    procs.stop(pids, grace=0.5)


def timed(what: str, action: object) -> float:
    t0 = time.perf_counter()
    action()  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    print(f"{what:<44} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> None:
    topology = DEFAULT_ROOT / "abench" / "topology"
    lab = Lab(LabConfig(name="abench", port_base=29700, topology=topology, schedules=False))
    lab.down()
    write(generate(SHAPE), topology)
    lab.snapshot_path().unlink(missing_ok=True)
    try:
        cold = timed("cold boot (import of the topology included)", lab.up)
        noop = timed("up on the running lab (no-op)", lab.up)
        kill_everything(lab)
        warm = timed("warm boot (all processes ended before)", lab.up)
        lab.down()
        write(generate(SHAPE), topology)
        cached = timed("cold boot from the cached import snapshot", lab.up)
    finally:
        lab.down()
    print(
        f"warm / cold = {warm / cold:.2f}; no-op / warm = {noop / warm:.2f}; cached / cold = {cached / cold:.2f}"
    )
    print(
        f"warm boot goal <= {WARM_GOAL_S:.0f} s: {'met' if warm <= WARM_GOAL_S else 'NOT met'} ({warm:.1f} s)"
    )


if __name__ == "__main__":
    main()
