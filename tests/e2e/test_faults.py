"""Faults around rack-bringup, each with the real service failing: Vault not answering, NetBox
answering writes with 503 or hanging (a proxy in front of the real NetBox), a host lost while its
playbook runs, an FRR daemon killed, the flow's process killed mid-run.
For each: a clear failure, nothing half-applied that a re-run cannot converge, and a re-run that
completes."""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import hvac
import pynetbox
import pytest

from atlas.core.run import poll_until
from atlas.lab import procs
from atlas.lab.lab import Lab
from atlas.net.sessions import ssh_exec
from atlas.secrets import SecretError, Vault
from atlas.sot.client import NetBoxUnreachable
from atlas.sot.read import read_site
from flows.rack_bringup import BringupFailed, rack_bringup
from tests.e2e.faults import netbox_proxy
from tests.e2e.runs import kill_when

pytestmark = pytest.mark.usefixtures("flow_env")


@pytest.fixture(scope="module", autouse=True)
def fresh_lab(lab: Lab) -> None:
    lab.reset()


def leaf_configs(lab: Lab, rack: str) -> dict[str, str]:
    return {d: lab.fabric.vtysh(d, "show running-config") for d in (f"{rack}-leaf1", f"{rack}-leaf2")}


def test_vault_not_answering_fails_before_anything_and_a_rerun_completes(
    lab: Lab, nb: pynetbox.api, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = leaf_configs(lab, "fra1-r01")
    with monkeypatch.context() as patched:
        patched.setenv("VAULT_ADDR", f"http://127.0.0.1:{lab.cfg.ports.prefect_pool}")  # nothing listens
        with pytest.raises(SecretError, match=r"Vault at http://127.0.0.1:\d+ did not answer"):
            rack_bringup(site="fra1", rack="fra1-r01", dry_run=False)
    assert leaf_configs(lab, "fra1-r01") == before
    assert rack_bringup(site="fra1", rack="fra1-r01", dry_run=False).failed == 0


def test_a_sealed_vault_fails_before_anything_and_a_rerun_after_unsealing_completes(lab: Lab) -> None:
    log = (lab.cfg.dir / "log" / "openbao.log").read_text()
    unseal_key = re.findall(r"^Unseal Key: (\S+)$", log, re.MULTILINE)[-1]  # the dev server prints it
    client = hvac.Client(url=lab.cfg.openbao_url, token=lab.secrets.openbao_root_token)
    before = leaf_configs(lab, "fra1-r01")
    client.sys.seal()
    try:
        with pytest.raises(SecretError, match="is sealed or down"):
            rack_bringup(site="fra1", rack="fra1-r01", dry_run=False)
    finally:
        client.sys.submit_unseal_key(unseal_key)
    assert leaf_configs(lab, "fra1-r01") == before
    assert rack_bringup(site="fra1", rack="fra1-r01", dry_run=False).failed == 0


def test_netbox_refusing_writes_leaves_the_rack_planned_and_a_rerun_records_it(
    lab: Lab, nb: pynetbox.api, monkeypatch: pytest.MonkeyPatch
) -> None:
    with netbox_proxy(lab.cfg.netbox_url) as proxy, monkeypatch.context() as patched:
        patched.setenv("NETBOX_URL", proxy.url)
        patched.setenv("NETBOX_TOKEN", lab.secrets.netbox_token)
        proxy.failing_writes = True
        before = leaf_configs(lab, "fra1-r02")
        # the first write of a bring-up: the MACs its BMCs report for the rack's new servers
        with pytest.raises(BringupFailed, match=r"NetBox did not take the MACs .* \(503\); nothing was"):
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
        assert proxy.refused and leaf_configs(lab, "fra1-r02") == before
        # NetBox takes those, and refuses the final record of the configured rack
        proxy.passing_writes = ("/api/dcim/mac-addresses/", "/api/dcim/interfaces/")
        proxy.refused.clear()
        with pytest.raises(BringupFailed, match=r"NetBox did not take the record \(503\).* fra1-r02"):
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
        assert proxy.refused, "the run never tried to write"
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "planned"
    assert {
        d.status.value for d in nb.dcim.devices.filter(rack_id=nb.dcim.racks.get(name="fra1-r02").id)
    } == {"planned"}
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.failed == 0 and report.changed == 0  # the devices were done; only NetBox was left
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "active"


def test_a_hung_netbox_fails_the_run_within_the_timeout_before_anything_and_a_rerun_completes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = leaf_configs(lab, "fra1-r01")
    with netbox_proxy(lab.cfg.netbox_url) as proxy, monkeypatch.context() as patched:
        patched.setenv("NETBOX_URL", proxy.url)
        patched.setenv("NETBOX_TOKEN", lab.secrets.netbox_token)
        patched.setenv("NETBOX_TIMEOUT", "2")
        proxy.hanging = True
        with pytest.raises(NetBoxUnreachable, match=rf"NetBox at {proxy.url} did not answer POST /graphql/"):
            rack_bringup(site="fra1", rack="fra1-r01", dry_run=False)
        assert proxy.refused, "the run never asked NetBox"
    assert leaf_configs(lab, "fra1-r01") == before
    assert rack_bringup(site="fra1", rack="fra1-r01", dry_run=False).failed == 0


def test_a_run_killed_mid_run_is_completed_by_the_next(lab: Lab) -> None:
    code = "from flows.rack_bringup import rack_bringup; rack_bringup(site='ams1', rack='ams1-r01', dry_run=False)"
    # killed once a switch is being configured or is: the host baseline may be under way or next
    kill_when(code, lambda: "ip ospf" in lab.fabric.vtysh("ams1-r01-leaf1", "show running-config"))
    # killed half-way through a switch's configuration, or after it: either way the next run finishes
    # what is left (waiting for the killed run's lock to lapse), and the one after has nothing to do
    assert rack_bringup(site="ams1", rack="ams1-r01", dry_run=False).failed == 0
    again = rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)
    assert again.failed == 0 and again.changed == 0
    assert "Full" in lab.fabric.vtysh("ams1-r01-leaf1", "show ip ospf neighbor")


def playbook_running(playbook: str) -> bool:
    return any(
        playbook in procs.cmdline(int(entry.name))
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
    )


def bringup_with_a_fault_mid_playbook(site: str, rack: str, fault: Callable[[], object]) -> object:
    """rack-bringup of `rack` in a thread, `fault()` once its host playbook is under way; what the
    run raised (None: it completed)."""
    outcome: dict[str, object] = {}

    def bring_up() -> None:
        try:
            outcome["report"] = rack_bringup(site=site, rack=rack, dry_run=False)
        except Exception as e:  # the caller asserts on it
            outcome["error"] = e

    worker = threading.Thread(target=contextvars.copy_context().run, args=(bring_up,))
    worker.start()
    try:
        while not playbook_running("host-baseline.yml"):
            assert worker.is_alive(), outcome
            time.sleep(0.2)
        fault()
    finally:
        worker.join()
    return outcome.get("error")


def test_a_host_lost_mid_playbook_fails_its_row_and_a_rerun_completes(lab: Lab, nb: pynetbox.api) -> None:
    lost = "ams1-r02-cmp2"
    try:
        error = bringup_with_a_fault_mid_playbook("ams1", "ams1-r02", lambda: lab.fabric.cut_ssh(lost))
        assert isinstance(error, BringupFailed) and lost in str(error), error
        assert nb.dcim.racks.get(name="ams1-r02").status.value == "planned"
    finally:
        lab.fabric.start_sshd(lost)
    report = rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    assert report.failed == 0
    assert nb.dcim.racks.get(name="ams1-r02").status.value == "active"


def test_a_server_powered_off_mid_playbook_fails_alone_and_after_power_on_a_rerun_completes(
    lab: Lab, nb: pynetbox.api, vault: Vault
) -> None:
    rack = "ams1-r02"
    servers = [d for d in read_site(nb, "ams1").devices if d.rack == rack and d.role.is_server]
    off = servers[0]
    facts = "cat /etc/atlas/facts.json"
    for server in servers:  # every host differs from its baseline: the playbook runs on each
        ssh_exec(server, vault.credential("ams1", server.role.value), "echo '{}' > /etc/atlas/facts.json")
    # the playbook is under way on the rack's hosts when one of them loses power
    error = bringup_with_a_fault_mid_playbook("ams1", rack, lambda: lab.power(off.name, on=False))
    assert isinstance(error, BringupFailed) and off.name in str(error), error
    for server in servers[1:]:  # the others completed
        assert off.name in str(error) and server.name not in str(error), error
        assert ssh_exec(server, vault.credential("ams1", server.role.value), facts).strip() != "{}"
    assert lab.power(off.name, on=True)
    leaves = [f"{rack}-leaf1", f"{rack}-leaf2"]

    def lldp(node: str) -> str:
        argv = [*lab.fabric.nsenter(node), "lldpcli", "show", "neighbors", "-f", "keyvalue"]
        return procs.run(argv, f"LLDP neighbours of {node}").stdout

    def heard() -> bool:  # it and its switches hear each other again (LLDP every 5 s)
        return all(leaf in lldp(off.name) for leaf in leaves) and all(
            off.name in lldp(leaf) for leaf in leaves
        )

    assert poll_until(heard, lambda done: done, timeout=30), "LLDP did not hear the server again"
    report = rack_bringup(site="ams1", rack=rack, dry_run=False)
    assert report.failed == 0
    assert ssh_exec(off, vault.credential("ams1", off.role.value), facts).strip() != "{}"


def test_a_dead_routing_daemon_fails_its_switch_before_any_push_and_a_rerun_after_restart_completes(
    lab: Lab, nb: pynetbox.api
) -> None:
    leaf = "ams1-r02-leaf1"
    before = lab.fabric.vtysh(leaf, "show running-config")
    assert lab.fabric.kill_frr_daemon(leaf, "ospfd")
    try:
        # the running leaf now lacks its OSPF lines: a push would be half-applied
        with pytest.raises(BringupFailed, match=rf"{leaf}: FRR's ospfd not running .*nothing pushed"):
            rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
        assert "ip ospf" not in lab.fabric.vtysh(leaf, "show running-config")
    finally:
        lab.fabric.restart_frr_daemon(leaf, "ospfd")  # what FRR's watchfrr does on a switch
    assert lab.fabric.vtysh(leaf, "show running-config") == before  # its saved configuration
    report = rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    assert report.failed == 0 and report.changed == 0
    assert "Full" in lab.fabric.vtysh(leaf, "show ip ospf neighbor")
