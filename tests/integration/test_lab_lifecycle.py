"""`lab up|down|status` on a second, small lab, while the session's lab keeps running beside it."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

from pyroute2 import IPRoute, netns

from atlas.core.run import poll_until
from atlas.lab import procs
from atlas.lab.config import DEFAULT_ROOT, LAB_DIR_VARIABLE, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from atlas.sot.client import connect

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
        assert len(tiny.fabric.namespaces()) == 5  # four nodes and the out-of-band network (BMCs)
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


def boot_id(lab: Lab, server: str) -> str:
    argv = [*lab.fabric.nsenter(server), "cat", "/proc/sys/kernel/random/boot_id"]
    return procs.run(argv, f"boot id of {server}").stdout.strip()


def test_the_lab_follows_netbox_as_hardware_would_and_keeps_the_rest_running() -> None:
    """A server racked in NetBox by hand (not in the topology files), cabled to a port of a name the
    lab's files never use, is built on the next `lab up` and seen by LLDP there; removed from NetBox,
    it is torn down. The rest keeps running: the same boot, the same files."""
    topology = DEFAULT_ROOT / "afollow" / "topology"
    Lab(LabConfig(name="afollow", port_base=29300)).down()
    shape = replace(
        TINY,
        mgmt=IPv4Network("198.18.9.0/24"),
        loopbacks=IPv4Network("198.19.9.0/24"),
        fabric=IPv4Network("198.18.193.0/24"),
    )
    write(generate(shape), topology)
    follow = Lab(LabConfig(name="afollow", port_base=29300, topology=topology))
    try:
        follow.up()
        nb = connect(follow.cfg.netbox_url, follow.secrets.netbox_token)
        [existing] = [d for d in nb.dcim.devices.filter(role="compute")]
        leaf = nb.dcim.devices.get(name=f"{existing.rack.name}-leaf1")
        kept = existing.name
        procs.run([*follow.fabric.nsenter(kept), "sh", "-c", "echo mine > /root/kept"], "a file of its own")
        before = boot_id(follow, kept)
        free = next(
            i
            for i in nb.dcim.interfaces.filter(device_id=leaf.id)
            if i.cable is None and not i.mgmt_only and i.type.value != "virtual"
        )
        new = nb.dcim.devices.create(
            name=f"{existing.rack.name}-cmp9",
            device_type=existing.device_type.id,
            role=existing.role.id,
            site=existing.site.id,
            rack=existing.rack.id,
            status="planned",
        )
        # its device type may have made its management port already
        mgmt = nb.dcim.interfaces.get(device_id=new.id, name="eth0") or nb.dcim.interfaces.create(
            device=new.id, name="eth0", type="1000base-t", mgmt_only=True
        )
        port = nb.dcim.interfaces.create(device=new.id, name="ens1f0", type="25gbase-x-sfp28")
        address = nb.ipam.ip_addresses.create(
            address="198.18.9.200/24", assigned_object_type="dcim.interface", assigned_object_id=mgmt.id
        )
        new.primary_ip4 = address.id
        new.save()
        nb.dcim.cables.create(
            a_terminations=[{"object_type": "dcim.interface", "object_id": free.id}],
            b_terminations=[{"object_type": "dcim.interface", "object_id": port.id}],
        )
        grown = follow.up()
        assert grown.fabric.built == [new.name] and not grown.fabric.removed, grown.fabric
        assert grown.fabric.restarted == [], grown.fabric
        assert boot_id(follow, kept) == before, "a server that was not changed kept running"
        lldp = [*follow.fabric.nsenter(leaf.name), "lldpcli", "show", "neighbors", "-f", "json"]
        seen = poll_until(
            lambda: procs.run(lldp, "LLDP neighbours").stdout,
            lambda out: new.name in out and "ens1f0" in out,
            timeout=30,
        )
        assert new.name in seen and "ens1f0" in seen, seen
        assert all(row.healthy for row in follow.status()), follow.status()

        nb.dcim.devices.get(name=new.name).delete()
        shrunk = follow.up()
        assert shrunk.fabric.removed == [new.name] and not shrunk.fabric.built, shrunk.fabric
        assert follow.cfg.netns(new.name) not in follow.fabric.namespaces()
        assert not follow.fabric.node_dir(new.name).exists()
        assert boot_id(follow, kept) == before
        assert procs.run([*follow.fabric.nsenter(kept), "cat", "/root/kept"], "its file").stdout == "mine\n"
        assert all(row.healthy for row in follow.status()), follow.status()
    finally:
        follow.down()
    assert leftovers(follow.cfg) == {
        k: [] for k in ("namespaces", "links", "mounts", "processes", "directory", "login")
    }
