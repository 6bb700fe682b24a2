"""The switch part of the consistency sweep, Atlas against Nornir + nornir-netmiko, in one run: fetch
the running config of every switch of a lab and compare it with its NetBox intent (the same
hier-config comparison for both). Goal: Atlas / Nornir <= 1.0. Boots its own lab beside any other,
configures the active switches with fabric-apply first, removes the lab afterwards. Prints; asserts
nothing.

    .venv/bin/python bench/sweep_vs_nornir.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from ipaddress import IPv4Network

from nornir.core import Nornir
from nornir.core.inventory import Host, Hosts, Inventory
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.plugins.runners import ThreadedRunner
from nornir_netmiko.tasks import netmiko_send_command
from prefect.settings import PREFECT_API_URL, temporary_settings

from atlas.core.model import Device
from atlas.core.run import targets
from atlas.lab.config import DEFAULT_ROOT, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from atlas.net.config import diff
from atlas.net.platforms import platform_of
from atlas.runbooks import sweep
from atlas.runbooks.site import Creds, credentials, read_view
from atlas.secrets import Vault, VaultSettings
from atlas.sot.client import connect
from atlas.sot.read import site_names
from flows.fabric import fabric_apply

SESSIONS = 8  # the same number of concurrent SSH sessions for both
ROUNDS = 3


def atlas_round(switches: list[Device], intended: Callable[[Device], str], creds: Creds) -> int:
    found = targets(switches, lambda d: creds.get((d.site, d.role.value)))
    return sum(r.changed for r in sweep.compare_running(found, intended, SESSIONS))


def nornir_round(switches: list[Device], intended: Callable[[Device], str], creds: Creds) -> int:
    hosts = Hosts()
    for d in switches:
        cred = creds[(d.site, d.role.value)]
        assert d.mgmt_address is not None
        hosts[d.name] = Host(
            name=d.name,
            hostname=str(d.mgmt_address.ip),
            username=cred.username,
            password=cred.password,
            platform=platform_of(d).device_type,
        )
    ConnectionPluginRegister.auto_register()  # what InitNornir does: finds nornir-netmiko
    nr = Nornir(inventory=Inventory(hosts=hosts), runner=ThreadedRunner(num_workers=SESSIONS))
    by_name = {d.name: d for d in switches}
    try:
        result = nr.run(task=netmiko_send_command, command_string="show running-config")
    finally:
        nr.close_connections()
    if result.failed:
        raise SystemExit(f"nornir failed on {sorted(result.failed_hosts)}")
    return sum(
        not diff(str(r[0].result), intended(by_name[name]), platform_of(by_name[name])).empty
        for name, r in result.items()
    )


def main() -> None:
    name, topology = "asweep", DEFAULT_ROOT / "asweep" / "topology"
    lab = Lab(LabConfig(name=name, port_base=29600, topology=topology, schedules=False))
    lab.down()
    shape = LabShape(
        mgmt=IPv4Network("198.18.24.0/22"),
        loopbacks=IPv4Network("198.19.24.0/22"),
        fabric=IPv4Network("198.18.192.0/18"),
    )
    write(generate(shape), topology)
    try:
        lab.up()
        os.environ.update(lab.env())
        with temporary_settings({PREFECT_API_URL: lab.cfg.prefect_url}):
            nb = connect(lab.cfg.netbox_url, lab.secrets.netbox_token)
            vault = Vault(VaultSettings(url=lab.cfg.openbao_url, token=lab.secrets.openbao_root_token))
            views = [read_view(nb, site) for site in site_names(nb)]
            for view in views:
                if view.active_switches:
                    fabric_apply(site=view.site.name, dry_run=False)
        switches = [d for v in views for d in v.site.devices if d.role.is_switch]
        render_by_site = {v.site.name: v for v in views}

        def intended(d: Device) -> str:
            return render_by_site[d.site].render(d)

        creds = credentials(vault, switches)
        times: dict[str, list[float]] = {"atlas": [], "nornir": []}
        drift: dict[str, int] = {}
        for _ in range(ROUNDS):  # alternating, so neither side always runs on a warmer machine
            for side, run in (("atlas", atlas_round), ("nornir", nornir_round)):
                t0 = time.perf_counter()
                drift[side] = run(switches, intended, creds)
                times[side].append(time.perf_counter() - t0)
    finally:
        lab.down()
    atlas, nornir = statistics.median(times["atlas"]), statistics.median(times["nornir"])
    print(f"switches: {len(switches)}, concurrent sessions: {SESSIONS}, rounds: {ROUNDS} (median)")
    print(f"switches differing from intent: atlas {drift['atlas']}, nornir {drift['nornir']} (must agree)")
    print(f"atlas  (exec channel + hier-config)        {atlas:6.2f} s")
    print(f"nornir (nornir-netmiko + hier-config)      {nornir:6.2f} s")
    print(f"ratio atlas / nornir                       {atlas / nornir:6.2f}   (goal <= 1.0)")


if __name__ == "__main__":
    main()
