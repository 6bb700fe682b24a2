"""The lab's real Ceph cluster and Atlas's Ceph adapter against it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pynetbox
import pytest

from atlas.ceph.cluster import Ceph, CephError
from atlas.core.model import Site
from atlas.lab.lab import Lab, osd_hosts
from atlas.sot.read import read_devices


@pytest.fixture(scope="module")
def ceph(lab: Lab) -> Ceph:
    return lab.ceph.ceph


def test_the_active_racks_storage_servers_carry_the_osds_placed_as_netbox_says(
    ceph: Ceph, sites: list[Site]
) -> None:
    osds = ceph.osds()
    hosts = {d.name: d for d in osd_hosts(sites)}
    assert {o["host"] for o in osds.values()} == set(hosts)
    assert all(o["up"] and o["in"] for o in osds.values())
    planned = [d.name for s in sites for d in s.devices if d.role.value == "storage" and d.name not in hosts]
    assert planned and not set(planned) & {o["host"] for o in osds.values()}
    tree = {n["name"]: n for n in ceph.call("osd", "tree")["nodes"]}
    for name, device in hosts.items():
        rack, site = tree[str(device.rack)], tree[device.site]
        assert (site["type"], rack["type"], tree[name]["type"]) == ("datacenter", "rack", "host")
        assert tree[name]["id"] in rack["children"] and rack["id"] in site["children"]
    assert ceph.health()[0] == "HEALTH_OK"


def test_an_osd_runs_on_its_server_not_beside_the_lab(lab: Lab, sites: list[Site]) -> None:
    host = osd_hosts(sites)[0]
    assert host.mgmt_address is not None
    listening = [*lab.fabric.nsenter(host.name), "ss", "-Htlnp"]
    out = subprocess.run(listening, capture_output=True, text=True, check=True).stdout
    assert "ceph-osd" in out and str(host.mgmt_address.ip) in out


def test_each_osd_was_made_by_ceph_volume_on_the_disk_netbox_lists(
    lab: Lab, ceph: Ceph, nb: pynetbox.api, sites: list[Site]
) -> None:
    hosts = read_devices(nb, [d.name for d in osd_hosts(sites)])  # now: the paths of this boot's disks
    attached = lab.fabric.disks.attached()
    by_host = {str(o["host"]): i for i, o in ceph.osds().items()}
    for host in hosts:
        [disk] = host.disks
        path = host.disk_paths[disk]
        assert attached[str(lab.fabric.disks.backing_file(host.name, disk))] == path
        meta = ceph.call("osd", "metadata", str(by_host[host.name]))
        assert (meta["bluestore_bdev_dev_node"], meta["osd_objectstore"]) == (path, "bluestore")
        listed = subprocess.run(
            [*lab.fabric.nsenter(host.name), "ceph-volume", "raw", "list", "--format", "json", path],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CEPH_VOLUME_ALLOW_LOOP_DEVICES": "1"},
        ).stdout
        assert [o["osd_id"] for o in json.loads(listed).values()] == [by_host[host.name]]


def test_noout_on_a_rack_bucket_is_set_and_removed(ceph: Ceph, sites: list[Site]) -> None:
    rack = str(osd_hosts(sites)[0].rack)
    ceph.set_group_noout([rack])
    try:
        assert "noout" in ceph.group_flags().get(rack, set())
    finally:
        ceph.unset_group_noout([rack])
    assert "noout" not in ceph.group_flags().get(rack, set())


def test_stop_and_destroy_answers_are_read_not_trusted_by_exit_code(ceph: Ceph) -> None:
    ids = sorted(ceph.osds())
    ok, _ = ceph.ok_to_stop(ids[:1])
    assert ok  # pool size 2, min_size 1: one OSD may stop
    ok, why = ceph.ok_to_stop(ids)
    assert not ok and "inactive" in why  # all of them may not (EBUSY)
    assert ceph.safe_to_destroy(ids[:1]) == []  # it holds PGs; the command exits 0 all the same


def test_a_bad_command_and_an_unreachable_mon_are_clear_errors(lab: Lab, ceph: Ceph, tmp_path: Path) -> None:
    with pytest.raises(CephError, match="failed"):
        ceph.call("osd", "set-group", "noout", "no-such-bucket")
    nobody = tmp_path / "ceph.conf"  # a mon address where nothing listens
    nobody.write_text(
        f"[global]\nmon_host = 127.0.0.1:{lab.cfg.ports.ceph_bind_max}\n"
        f"[client]\nkeyring = {lab.ceph.admin_keyring}\n"
    )
    with pytest.raises(CephError):
        Ceph(nobody, timeout=3).health()
