"""The host baseline (playbooks/host-baseline.yml): its variables from NetBox, and converging hosts
to it by reading their state first and running the playbook only where it differs.

A server with anycast addresses in NetBox also runs FRR (zebra and ospfd under the host's service
manager) and announces them from a dummy interface; whether that interface is up is the host's drain
state (atlas.workloads), which the baseline never changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from atlas.core.model import Credential, Device, InterfaceKind, Site
from atlas.core.parallel import MAX_PARALLEL_SESSIONS, each_device
from atlas.core.run import Result
from atlas.hosts.facts import FACTS_COMMAND, SYSCTLS, baseline_drift
from atlas.hosts.runner import Host, run_playbook
from atlas.net.render import render_host
from atlas.net.sessions import DeviceUnreachable, ssh_exec

PLAYBOOK = "host-baseline.yml"
SETTLE_SECONDS = 30.0  # a host link's adjacency is Full within seconds (hello 1 s, dead 4 s)

CredentialOf = Callable[[Device], Credential]
Log = Callable[[str], None]


def inventory(site: Site, devices: dict[str, Device], servers: Iterable[Device]) -> list[Host]:
    """Each server's playbook variables: addresses, the ECMP default route over the leaves it is
    cabled to (their addresses on those cables), sysctls, hostname, facts."""
    hosts = []
    for s in servers:
        addresses: dict[str, list[str]] = {"lo": ["127.0.0.1/8"]}
        gateways = []
        for i in s.interfaces:
            if i.kind == InterfaceKind.LOOPBACK:
                addresses["lo"] += [str(a) for a in i.addresses]
            elif i.kind == InterfaceKind.PHYSICAL:
                addresses[i.name] = [str(a) for a in i.addresses]
        for c in site.cables_of(s.name):
            mine, far = c.ends_from(s.name)
            leaf = devices.get(far.device)
            port = leaf.interface(far.interface) if leaf else None
            if port is not None and port.addresses:
                gateways.append({"gateway": str(port.addresses[0].ip), "ifname": mine.interface})
        assert s.mgmt_address is not None  # preflight
        hosts.append(
            Host(
                name=s.name,
                address=str(s.mgmt_address.ip),
                variables={
                    "atlas_hostname": s.name,
                    "atlas_sysctls": SYSCTLS,
                    "atlas_addresses": addresses,
                    "atlas_gateways": sorted(gateways, key=lambda g: g["ifname"]),
                    "atlas_service_addresses": [str(a) for a in s.anycast],
                    # announced by the host's own FRR; None: the host does not route
                    "atlas_frr_config": render_host(site, s),
                    "atlas_facts": {
                        "site": s.site,
                        "rack": s.rack,
                        "role": s.role.value,
                        "name": s.name,
                        "loopback": str(s.loopback) if s.loopback else None,
                    },
                },
            )
        )
    return hosts


def read_drift(
    hosts: list[Host], devices: dict[str, Device], cred_of: CredentialOf, limit: int = MAX_PARALLEL_SESSIONS
) -> dict[str, list[str] | DeviceUnreachable]:
    """Per host, how it differs from its baseline, or why its state could not be read."""
    variables = {h.name: h.variables for h in hosts}

    def drift(device: Device) -> list[str] | DeviceUnreachable:
        try:
            output = ssh_exec(device, cred_of(device), FACTS_COMMAND)
        except DeviceUnreachable as e:
            return e
        return baseline_drift(variables[device.name], output)

    return dict(zip(variables, each_device(drift, [devices[h.name] for h in hosts], limit), strict=True))


def run(
    hosts: list[Host],
    devices: dict[str, Device],
    cred_of: CredentialOf,
    check: bool,
    log: Log | None = None,
    forks: int | None = None,
) -> list[Result]:
    """The playbook on `hosts`, one run per distinct credential (usually one for all of them)."""
    groups: dict[Credential, list[Host]] = {}
    for h in hosts:
        groups.setdefault(cred_of(devices[h.name]), []).append(h)
    results = []
    for cred, members in groups.items():
        results += run_playbook(PLAYBOOK, members, cred, check=check, on_event=log, forks=forks)
    return results


def converge(
    hosts: list[Host],
    devices: dict[str, Device],
    cred_of: CredentialOf,
    drift: dict[str, list[str] | DeviceUnreachable],
    dry_run: bool,
    log: Log,
) -> list[Result]:
    """The playbook runs only on hosts whose state differs (`drift`, just read); the others are
    reported as they are."""
    for name, found in drift.items():
        if isinstance(found, DeviceUnreachable):  # the playbook says what is wrong, or fixes it
            log(f"{name}: state not readable ({found}); running the playbook")
        elif found:
            log(f"{name}: differs from its baseline: " + "; ".join(found))
    as_intended = [
        Result(target=h.name, step=PLAYBOOK, detail="already as intended") for h in hosts if not drift[h.name]
    ]
    results = run([h for h in hosts if drift[h.name]], devices, cred_of, check=dry_run, log=log)
    if dry_run:
        return as_intended + results
    return as_intended + settle(hosts, results, lambda some: read_drift(some, devices, cred_of))


DriftReader = Callable[[list[Host]], dict[str, list[str] | DeviceUnreachable]]


def settle(
    hosts: list[Host],
    results: list[Result],
    read: DriftReader,
    timeout: float = SETTLE_SECONDS,
    pause: float = 0.5,
) -> list[Result]:
    """Hosts the playbook changed, read again until they match their baseline: a host's OSPF
    adjacencies come up seconds after its FRR starts, and a run should not call a host done (nor the
    next run find it differing) before they do. A host still differing at the timeout fails, saying how."""
    pending = {r.target for r in results if r.changed and not r.failed}
    deadline = time.monotonic() + timeout
    found: dict[str, list[str] | DeviceUnreachable] = {}
    while pending:
        found = read([h for h in hosts if h.name in pending])
        pending = {name for name, drift in found.items() if drift}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(pause)

    def why(name: str) -> str:
        drift = found[name]
        return str(drift) if isinstance(drift, DeviceUnreachable) else "; ".join(drift)

    return [
        r.model_copy(update={"failed": True, "detail": f"after the playbook, still differs: {why(r.target)}"})
        if r.target in pending
        else r
        for r in results
    ]
