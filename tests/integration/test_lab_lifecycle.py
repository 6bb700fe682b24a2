"""`lab up|down|status` on a second, small lab, while the session's lab keeps running beside it."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Network
from pathlib import Path

from pyroute2 import IPRoute, netns

from atlas.lab import procs
from atlas.lab.config import DEFAULT_ROOT, LAB_DIR_VARIABLE, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab

TINY = LabShape(
    sites=1,
    spines=1,
    racks=1,
    compute=1,
    storage=0,
    core=False,
    mgmt=IPv4Network("198.18.8.0/24"),
    loopbacks=IPv4Network("198.19.8.0/24"),
    fabric=IPv4Network("198.18.192.0/24"),
)


def lab_pids(cfg: LabConfig) -> list[int]:
    """Every process of the lab, found every way there is: what CI ends after a session."""
    spaces = [Path("/run/netns") / n for n in netns.listnetns() if n.startswith(cfg.prefix)]
    from_files = [procs.read_pid(f) for f in cfg.dir.rglob("*.pid")]
    from_files.append(procs.read_pid(cfg.dir / "netbox" / "pg" / "postmaster.pid"))
    found = set(procs.marked(LAB_DIR_VARIABLE, str(cfg.dir))) | set(procs.in_network_namespaces(spaces))
    found |= {p for p in from_files if p is not None and procs.alive(p)}
    return sorted(found)


def leftovers(cfg: LabConfig) -> dict[str, list[str]]:
    with IPRoute() as ipr:
        links = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()
    return {
        "namespaces": [n for n in netns.listnetns() if n.startswith(cfg.prefix)],
        "links": [n for n in links if n.startswith(cfg.prefix)],
        "mounts": [m for m in mounts if str(cfg.dir) in m],
        "processes": [p for p in ps if str(cfg.dir) in p] + [str(p) for p in lab_pids(cfg)],
        "directory": [str(cfg.dir)] if cfg.dir.exists() else [],
        "login": [cfg.switch_user]
        if subprocess.run(["getent", "passwd", cfg.switch_user], capture_output=True, check=False).returncode
        == 0
        else [],
    }


def test_up_is_idempotent_repairs_a_half_dead_lab_and_down_leaves_nothing(lab: Lab) -> None:
    topology = DEFAULT_ROOT / "atiny" / "topology"
    Lab(LabConfig(name="atiny", port_base=29100)).down()  # whatever an interrupted earlier run left
    write(generate(TINY), topology)
    tiny = Lab(LabConfig(name="atiny", port_base=29100, topology=topology))
    main_namespaces = lab.fabric.namespaces()
    try:
        first = tiny.up()
        assert first.changed and first.fabric_rebuilt
        assert all(row.healthy for row in tiny.status()), tiny.status()
        assert len(tiny.fabric.namespaces()) == 4
        assert "no storage server" in next(r.detail for r in tiny.status() if r.name == "ceph")

        again = tiny.up()
        assert not again.changed, again

        # what CI or a reboot leaves: every process gone, namespaces, links and mounts still there
        procs.stop(lab_pids(tiny.cfg), grace=0.5)
        assert tiny.fabric.namespaces(), "namespaces survive their processes"
        assert not any(row.healthy for row in tiny.status() if row.name != "ceph")  # it runs no ceph
        repaired = tiny.up()
        assert repaired.fabric_rebuilt and "netbox" in repaired.started
        assert all(row.healthy for row in tiny.status()), tiny.status()

        # the session's lab was never touched
        assert lab.fabric.namespaces() == main_namespaces
        assert all(row.healthy for row in lab.status()), lab.status()
    finally:
        tiny.down()
    assert leftovers(tiny.cfg) == {
        k: [] for k in ("namespaces", "links", "mounts", "processes", "directory", "login")
    }
    assert lab.fabric.namespaces() == main_namespaces
    assert all(row.healthy for row in lab.status())


def test_a_lab_refuses_to_boot_over_another_labs_addresses(lab: Lab, tmp_path: Path) -> None:
    clash = Lab(LabConfig(name="aclash", port_base=29200, topology=lab.cfg.topology))
    try:
        # its NetBox and servers may start; the fabric must not
        try:
            clash.up()
        except Exception as e:
            message = str(e)
        else:
            message = ""
        assert "overlaps" in message and lab.cfg.bridge in message
        assert clash.fabric.namespaces() == []
    finally:
        clash.down()
    assert all(row.healthy for row in lab.status())
    assert lab.cfg.dir.exists()
