"""The configuration-consistency sweep: every active device of a site against its NetBox intent.

Switches: running config against the rendered intent, compared by hier-config (order-insensitive,
volatile lines ignored). Hosts: the baseline playbook in Ansible check mode with diff. Cabling: LLDP
against NetBox cables. Each finding is a `Result` (step = area): changed means drift, failed means
the device could not be checked. The sweep itself changes nothing on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum

import pynetbox

from atlas.core.model import Credential, Device, DeviceStatus
from atlas.core.parallel import each_device
from atlas.core.run import Result
from atlas.hosts import baseline
from atlas.net.config import diff
from atlas.net.lldp import Neighbours, check_cabling
from atlas.net.render import RenderError
from atlas.net.sessions import DeviceUnreachable, lldp_neighbours, switch_show
from atlas.runbooks.site import SiteView
from atlas.sot.schema import CHECKED_AT_FIELD, COMPLIANCE_FIELD

Creds = dict[tuple[str, str], Credential]


class Area(StrEnum):
    SWITCHES = "switches"
    HOSTS = "hosts"
    CABLING = "cabling"


class Compliance(StrEnum):
    COMPLIANT = "compliant"
    DRIFT = "drift"
    NOT_CHECKED = "not checked"  # unreachable or failing: never silently counted as compliant


def active(view: SiteView) -> list[Device]:
    return [
        d
        for d in view.site.devices
        if d.status == DeviceStatus.ACTIVE and (d.role.is_switch or d.role.is_server)
    ]


def compare_running(
    switches: Iterable[Device], intended: Callable[[Device], str], creds: Creds, limit: int
) -> list[Result]:
    """Each switch's running config (one exec channel, no interactive session) against its intent."""

    def one(d: Device) -> Result:
        try:
            wanted = intended(d)
            running = switch_show(d, creds[(d.site, d.role.value)], "show running-config")
        except (RenderError, DeviceUnreachable) as e:
            return Result.failure(d.name, Area.SWITCHES.value, str(e))
        found = diff(running, wanted)
        if found.empty:
            return Result(target=d.name, step=Area.SWITCHES.value, detail="as intended")
        return Result(
            target=d.name,
            step=Area.SWITCHES.value,
            changed=True,
            diff=found.summary,
            detail=f"{len(found.summary)} line(s) differ from NetBox",
        )

    return each_device(one, switches, limit)


def check_switches(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    return compare_running([d for d in active(view) if d.role.is_switch], view.render, creds, limit)


def check_hosts(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    """Each server's state read in one SSH command against the baseline playbook's variables, the read
    rack-bringup trusts to skip Ansible: a playbook run in check mode per host takes minutes at a full
    datacenter's 240 servers, this read seconds. Remediation runs the playbook itself."""
    servers = [d for d in active(view) if d.role.is_server]
    hosts = baseline.inventory(view.site, view.devices, servers)
    drift = baseline.read_drift(hosts, view.devices, lambda d: creds[(d.site, d.role.value)], limit)
    step = Area.HOSTS.value
    return [
        Result.failure(name, step, f"state not readable: {found}")
        if isinstance(found, DeviceUnreachable)
        else Result(
            target=name,
            step=step,
            changed=bool(found),
            diff=found,
            detail=f"{len(found)} difference(s) from the baseline" if found else "as the baseline",
        )
        for name, found in drift.items()
    ]


def check_cabling_of(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    """LLDP of every active device against NetBox; a missing link to a device that is not active yet
    (a planned rack, powered off) is expected and not reported."""
    devices = active(view)

    def neighbours(d: Device) -> Neighbours | Result:
        try:
            return lldp_neighbours(d, creds[(d.site, d.role.value)])
        except DeviceUnreachable as e:
            return Result.failure(d.name, Area.CABLING.value, str(e))

    seen = dict(zip((d.name for d in devices), each_device(neighbours, devices, limit), strict=True))
    observed = {name: n for name, n in seen.items() if not isinstance(n, Result)}
    problems = check_cabling(view.site.cables, observed)
    by_device: dict[str, list[str]] = {}
    for p in problems:
        far = view.devices.get(p.expected.device) if p.expected else None
        if p.kind == "missing" and (far is None or far.status != DeviceStatus.ACTIVE):
            continue
        by_device.setdefault(p.port.device, []).append(str(p))
    results = [r for r in seen.values() if isinstance(r, Result)]
    for name in observed:
        found = by_device.get(name, [])
        results.append(
            Result(
                target=name,
                step=Area.CABLING.value,
                changed=bool(found),
                diff=tuple(found),
                detail=f"{len(found)} port(s) differ from NetBox" if found else "as cabled in NetBox",
            )
        )
    return results


def compliance(results: Iterable[Result]) -> Compliance:
    found = list(results)
    if any(r.failed for r in found):
        return Compliance.NOT_CHECKED
    return Compliance.DRIFT if any(r.changed for r in found) else Compliance.COMPLIANT


def by_device(results: Iterable[Result]) -> dict[str, list[Result]]:
    grouped: dict[str, list[Result]] = {}
    for r in results:
        grouped.setdefault(r.target, []).append(r)
    return grouped


def _printable(text: str) -> str:
    """Device output goes into NetBox markdown: one line, no control characters, no backticks."""
    return "".join(c for c in text if c.isprintable()).replace("`", "'")


def journal_line(
    device: Device, now: Compliance, found: list[Result], remediated: list[Result]
) -> str | None:
    """Only news is worth a journal entry: new drift, drift resolved or remediated, lost contact."""
    before = device.custom_fields.get(COMPLIANCE_FIELD)
    fixed = [r for r in remediated if r.changed and not r.failed]
    if not fixed and (before == now.value or (before is None and now == Compliance.COMPLIANT)):
        return None
    details = [
        f"- {r.step}: {_printable(r.detail)}" + "".join(f"\n  - `{_printable(x)}`" for x in r.diff[:20])
        for r in (*found, *remediated)
        if r.changed or r.failed
    ]
    head = (
        f"config-sweep: drift found and remediated, now {now.value}"
        if fixed
        else f"config-sweep: {before or 'never checked'} → {now.value}"
    )
    return head + ("\n" + "\n".join(details) if details else "")


def record(
    nb: pynetbox.api, view: SiteView, found: list[Result], remediated: list[Result], at: datetime
) -> dict[str, str]:
    """Compliance and time on every checked device in one bulk update; a journal entry on each
    device with news. Returns the journal entries written, by device."""
    updates, journals = [], {}
    fixes = by_device(remediated)
    for name, results in sorted(by_device(found).items()):
        device = view.site.device(name)
        if device is None or device.netbox_id is None:
            continue
        now = compliance(results)
        updates.append(
            {
                "id": device.netbox_id,
                "custom_fields": {COMPLIANCE_FIELD: now.value, CHECKED_AT_FIELD: at.isoformat()},
            }
        )
        line = journal_line(device, now, results, fixes.get(name, []))
        if line is not None:
            journals[name] = line
    if updates:
        nb.dcim.devices.update(updates)
    if journals:
        nb.extras.journal_entries.create(
            [
                {
                    "assigned_object_type": "dcim.device",
                    "assigned_object_id": view.devices[name].netbox_id,
                    "kind": "success"
                    if line.split("\n")[0].endswith(Compliance.COMPLIANT.value)
                    else "warning",
                    "comments": line,
                }
                for name, line in journals.items()
            ]
        )
    return journals
