"""The host baseline (playbooks/host-baseline.yml): its variables from NetBox, and converging hosts
to it by reading their state first and running the playbook only where it differs.

Its state is files the host applies at boot (atlas.hosts.files): what a run sets, a reboot restores.
A server with anycast addresses in NetBox also runs FRR (Debian's frr.service, its daemons the site's
routing design's) and announces them from an inert interface (an ifb); whether that interface is up is the
host's drain state (atlas.workloads), which the baseline never changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from atlas.core.model import Credential, Device, InterfaceKind, Site
from atlas.core.run import MAX_SESSIONS, Log, Readings, Result, Results, Target, poll_until, read_each
from atlas.hosts.facts import baseline_drift, facts_command
from atlas.hosts.files import KERNEL_LOOPBACK, SYSCTLS, Gateway, Server
from atlas.hosts.files import variables as baseline_variables
from atlas.hosts.runner import Host, run_playbook
from atlas.hosts.services import playbook_variables
from atlas.net.render import render_host
from atlas.net.routing import RoutingDesign, design_of
from atlas.net.sessions import ssh_exec

PLAYBOOK = "host-baseline.yml"
SETTLE_SECONDS = 30.0  # a host link's adjacency is Full within seconds (hello 1 s, dead 4 s)

CredentialOf = Callable[[Device], Credential]
Drift = Readings[list[str]]  # per host: how it differs from its baseline, or why it could not be read
DriftReader = Callable[[list[Host]], Drift]


def inventory(site: Site, devices: dict[str, Device], servers: Iterable[Target]) -> list[Host]:
    """Each server's playbook variables: its baseline's files (atlas.hosts.files: addresses, the
    ECMP default route over the leaves it is cabled to, sysctls, hostname, facts, FRR on a routing
    host) and the data they come from, and its service manager's."""
    hosts = []
    for target in servers:
        s = target.device
        addresses: dict[str, list[str]] = {"lo": [KERNEL_LOOPBACK]}
        gateways = []
        for i in s.interfaces:
            if i.kind == InterfaceKind.LOOPBACK:
                addresses["lo"] += [str(a) for a in i.addresses]
            elif i.kind == InterfaceKind.PHYSICAL:  # never the management NIC: provisioning's
                addresses[i.name] = [str(a) for a in i.addresses]
        for c in site.cables_of(s.name):
            mine, far = c.ends_from(s.name)
            leaf = devices.get(far.device)
            port = leaf.interface(far.interface) if leaf else None
            if port is not None and port.addresses:
                gateways.append(Gateway(gateway=str(port.addresses[0].ip), ifname=mine.interface))
        frr_config = render_host(site, s)  # announced by the host's own FRR; None: it does not route
        server = Server(
            hostname=s.name,
            addresses=addresses,
            gateways=sorted(gateways, key=lambda g: g.ifname),
            service_addresses=[str(a) for a in s.anycast],
            sysctls=SYSCTLS,
            frr_config=frr_config,
            frr_daemons=design_of(site).daemons if frr_config is not None else (),
            facts={
                "site": s.site,
                "rack": s.rack,
                "role": s.role.value,
                "name": s.name,
                "loopback": str(s.loopback) if s.loopback else None,
            },
        )
        hosts.append(
            Host(
                name=s.name,
                address=target.address,
                variables={**baseline_variables(server), **playbook_variables(s)},
            )
        )
    return hosts


def read_drift(
    hosts: list[Host],
    devices: dict[str, Device],
    cred_of: CredentialOf,
    max_sessions: int = MAX_SESSIONS,
    design: RoutingDesign | None = None,
) -> Drift:
    """Per host, how it differs from its baseline, or why its state could not be read; its routing as
    the site's routing design reads it (omitted: the default design)."""
    variables, command = {h.name: h.variables for h in hosts}, facts_command(design)

    def drift(device: Device) -> list[str]:
        output = ssh_exec(device, cred_of(device), command)
        return baseline_drift(variables[device.name], output, design)

    return read_each(drift, [devices[h.name] for h in hosts], max_sessions)


def differs(drift: Drift, name: str) -> bool:
    """The host needs the playbook: it differs, or its state could not be read (the playbook says
    what is wrong, or fixes it)."""
    return name in drift.errors or name not in drift.values or bool(drift.values[name])


def run(
    hosts: list[Host],
    devices: dict[str, Device],
    cred_of: CredentialOf,
    check: bool,
    log: Log | None = None,
    forks: int | None = None,
) -> Results:
    """The playbook on `hosts`, one run per distinct credential (usually one for all of them)."""
    groups: dict[Credential, list[Host]] = {}
    for h in hosts:
        groups.setdefault(cred_of(devices[h.name]), []).append(h)
    results = Results()
    for cred, members in groups.items():
        results += run_playbook(PLAYBOOK, members, cred, check=check, on_event=log, forks=forks)
    return results


def converge(
    hosts: list[Host],
    devices: dict[str, Device],
    cred_of: CredentialOf,
    drift: Drift,
    dry_run: bool,
    log: Log,
    design: RoutingDesign | None = None,
) -> Results:
    """The playbook runs only on hosts whose state differs (`drift`, just read); the others are
    reported as they are. Changed hosts are read again (`design`: as for read_drift) until they settle."""
    for h in hosts:
        if h.name in drift.errors:
            log(f"{h.name}: state not readable ({drift.errors[h.name]}); running the playbook")
        elif drift.values.get(h.name):
            log(f"{h.name}: differs from its baseline: " + "; ".join(drift.values[h.name]))
    as_intended = Results(Result.unchanged(h.name, PLAYBOOK) for h in hosts if not differs(drift, h.name))
    results = run([h for h in hosts if differs(drift, h.name)], devices, cred_of, check=dry_run, log=log)
    if dry_run:
        return as_intended + results
    return as_intended + settle(
        hosts, results, lambda some: read_drift(some, devices, cred_of, design=design)
    )


def settle(
    hosts: list[Host],
    results: list[Result],
    read: DriftReader,
    timeout: float = SETTLE_SECONDS,
    pause: float = 0.5,
) -> Results:
    """Hosts the playbook changed, read again until they match their baseline: a host's OSPF
    adjacencies come up seconds after its FRR starts, and a run should not call a host done (nor the
    next run find it differing) before they do. A host still differing at the timeout fails, saying how."""
    pending = {r.target for r in results if r.changed and not r.failed}
    if not pending:
        return Results(results)

    def read_pending() -> Drift:
        """The hosts still pending; those that match leave `pending`."""
        found = read([h for h in hosts if h.name in pending])
        pending.difference_update(name for name in list(pending) if not differs(found, name))
        return found

    last = poll_until(read_pending, lambda _: not pending, timeout, pause)

    def why(name: str) -> str:
        return last.errors[name] if name in last.errors else "; ".join(last.values.get(name, []))

    return Results(
        r.model_copy(update={"failed": True, "detail": f"after the playbook, still differs: {why(r.target)}"})
        if r.target in pending
        else r
        for r in results
    )
