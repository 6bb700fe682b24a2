"""The configuration-consistency sweep: every active device of a site against its NetBox intent.

Switches: running config against the rendered intent, compared by hier-config (order-insensitive,
volatile lines ignored). Hosts: the baseline playbook in Ansible check mode with diff. Cabling: LLDP
against NetBox cables. Each finding is a `Result` (step = area): changed means drift, failed means
the device could not be checked. A switch or server whose address plan in NetBox is unsound
(atlas.sot.address_plan) is not checked, with every problem named. The sweep itself changes nothing
on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import StrEnum

import pynetbox

from atlas.core.errors import Refused
from atlas.core.model import Device, DeviceStatus
from atlas.core.run import Result, Results, Target, TargetMap, Targets, read_each, run_each
from atlas.hosts import baseline
from atlas.hosts.services import service_problems
from atlas.net.config import diff
from atlas.net.lldp import check_cabling
from atlas.net.platforms import platform_of
from atlas.net.render import plan_problems
from atlas.net.routing import design_of, design_problem
from atlas.net.sessions import lldp_neighbours
from atlas.net.switch import STEP
from atlas.runbooks.site import SiteView, vault_targets
from atlas.secrets import Vault
from atlas.sot.address_plan import device_problems
from atlas.sot.schema import CHECKED_AT_FIELD, COMPLIANCE_FIELD
from atlas.sot.write import JournalEntry, set_devices_custom_fields, write_journal


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


def checks(area: Area, device: Device) -> bool:
    """Whether the area checks the device: switches' configs, servers' baselines, everyone's cables."""
    return area == Area.CABLING or (device.role.is_switch if area == Area.SWITCHES else device.role.is_server)


# --- targets --------------------------------------------------------------------------------------
def sweep_targets(view: SiteView, vault: Vault) -> TargetMap:
    """Every active device that has a management address, as a Target; credentials read once per
    site and role, their values never leave memory."""
    return TargetMap(vault_targets(vault, [d for d in active(view) if d.mgmt_address is not None]))


def unaddressed(view: SiteView, areas: Iterable[Area]) -> Results:
    """An active device without a management address cannot be checked: a failed finding in each
    area that checks it, never one silently left out."""
    return Results(
        Result.failure(d.name, area.value, f"{d.name} has no management address in NetBox")
        for area in areas
        for d in active(view)
        if d.mgmt_address is None and checks(area, d)
    )


# --- the checks -----------------------------------------------------------------------------------
def compare_running(switches: Iterable[Target], intended: Callable[[Device], str], limit: int) -> Results:
    """Each switch's running config (one exec channel, no interactive session) against its intent,
    compared under its platform's rules. A switch whose intent cannot be rendered (a platform or
    routing design Atlas does not know, ...) is not checked, with the reason."""
    step = Area.SWITCHES.value

    def one(t: Target) -> Result:
        try:
            wanted = intended(t.device)
            platform = platform_of(t.device)
        except Refused as e:
            return Result.failure(t.name, step, "; ".join(e.problems))
        found = diff(platform.show(t.device, t.credential, platform.running_config_command), wanted, platform)
        if found.empty:
            return Result(target=t.name, step=step, detail="as intended")
        return Result(
            target=t.name,
            step=step,
            changed=True,
            diff=found.summary,
            detail=f"{len(found.summary)} line(s) differ from NetBox",
        )

    return run_each(one, switches, step, limit)


def plan_refusals(view: SiteView, targets: list[Target], step: str) -> tuple[list[Target], Results]:
    """The targets whose address plan in NetBox is sound, and a failed finding (not checked, with
    every problem) for each of the others: their intent is not worth comparing, nor remediating."""
    bad = {
        t.name: p
        for t in targets
        if (
            p := device_problems(t.device, view.site, view.devices)
            + plan_problems(view.site, [t.device], view.devices)
        )
    }
    refused = Results(
        Result.failure(
            name, step, "not checked: the address and routing plan in NetBox: " + "; ".join(problems)
        )
        for name, problems in bad.items()
    )
    return [t for t in targets if t.name not in bad], refused


def check_switches(view: SiteView, found: Targets, limit: int) -> Results:
    switches = [t for t in found.values() if checks(Area.SWITCHES, t.device)]
    switches, refused = plan_refusals(view, switches, Area.SWITCHES.value)
    return refused + compare_running(switches, view.render, limit)


def check_hosts(view: SiteView, found: Targets, limit: int) -> Results:
    """Each server's state read in one SSH command against the baseline playbook's variables, the read
    rack-bringup trusts to skip Ansible: a playbook run in check mode per host takes minutes at a full
    datacenter's 240 servers, this read seconds. Remediation runs the playbook itself."""
    servers = [t for t in found.values() if checks(Area.HOSTS, t.device)]
    step = Area.HOSTS.value
    servers, refused = plan_refusals(view, servers, step)
    unknown = design_problem(view.site)  # a routing design Atlas does not know: no baseline to check
    if unknown is not None:
        return refused + Results(Result.failure(t.name, step, unknown) for t in servers)
    # a server whose service manager Atlas does not know has no baseline either: not checked, named
    managers = {t.name: p for t in servers for p in service_problems([t.device])}
    servers = [t for t in servers if t.name not in managers]
    not_checked = Results(Result.failure(name, step, problem) for name, problem in managers.items())
    hosts = baseline.inventory(view.site, view.devices, servers)
    drift = baseline.read_drift(
        hosts, view.devices, lambda d: found[d.name].credential, limit, design_of(view.site)
    )

    def finding(name: str) -> Result:
        if name in drift.errors:
            return Result.failure(name, step, f"state not readable: {drift.errors[name]}")
        differs = drift.values[name]
        return Result(
            target=name,
            step=step,
            changed=bool(differs),
            diff=tuple(differs),
            detail=f"{len(differs)} difference(s) from the baseline" if differs else "as the baseline",
        )

    return refused + not_checked + Results(finding(t.name) for t in servers)


def check_cabling_of(view: SiteView, found: Targets, limit: int) -> Results:
    """LLDP of every active device against NetBox; a missing link to a device that is not active yet
    (a planned rack, powered off) is expected and not reported."""
    step = Area.CABLING.value
    seen = read_each(lambda t: lldp_neighbours(t.device, t.credential), found.values(), limit)
    by_device: dict[str, list[str]] = {}
    for p in check_cabling(view.site.cables, seen.values):
        far = view.devices.get(p.expected.device) if p.expected else None
        if p.kind == "missing" and (far is None or far.status != DeviceStatus.ACTIVE):
            continue
        by_device.setdefault(p.port.device, []).append(str(p))
    results = Results(Result.failure(name, step, why) for name, why in seen.errors.items())
    for name in seen.values:
        ports = by_device.get(name, [])
        results.append(
            Result(
                target=name,
                step=step,
                changed=bool(ports),
                diff=tuple(ports),
                detail=f"{len(ports)} port(s) differ from NetBox" if ports else "as cabled in NetBox",
            )
        )
    return results


# --- remediation ------------------------------------------------------------------------------------
AREA_OF_STEP = {STEP: Area.SWITCHES, baseline.PLAYBOOK: Area.HOSTS}  # a remediation's step: the area it fixes


def drifted(view: SiteView, findings: Results, area: Area) -> list[Device]:
    """The active devices with drift (and no failure) in `area`: the ones a remediation changes."""
    names = {r.target for r in findings if r.step == area.value and r.changed and not r.failed}
    return [d for d in active(view) if d.name in names]


def after_remediation(findings: Results, remediated: Results, dry_run: bool) -> Results:
    """A finding whose device was remediated without failure is now in line; the report keeps both,
    and a failed remediation is a finding of its own."""
    fixed = set() if dry_run else {(AREA_OF_STEP.get(r.step), r.target) for r in remediated if not r.failed}
    return Results(
        r.model_copy(update={"changed": False, "detail": f"remediated; found: {r.detail}"})
        if (r.step, r.target) in fixed
        else r
        for r in findings
    ) + Results(remediated.failed)


# --- NetBox -----------------------------------------------------------------------------------------
def compliance(results: Iterable[Result]) -> Compliance:
    found = list(results)
    if any(r.failed for r in found):
        return Compliance.NOT_CHECKED
    return Compliance.DRIFT if any(r.changed for r in found) else Compliance.COMPLIANT


def _printable(text: str) -> str:
    """Device output goes into NetBox markdown: one line, no control characters, no backticks."""
    return "".join(c for c in text if c.isprintable()).replace("`", "'")


def journal_line(
    device: Device, now: Compliance, found: Sequence[Result], remediated: Sequence[Result]
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
    nb: pynetbox.api, view: SiteView, found: Results, remediated: Results, at: datetime
) -> dict[str, str]:
    """Compliance and time on every checked device in one bulk update; a journal entry on each
    device with news, all in one bulk create (news by construction: nothing is read first). Returns
    the journal entries written, by device."""
    values, entries = [], []
    for name in sorted({r.target for r in found}):
        device = view.site.device(name)
        if device is None or device.netbox_id is None:
            continue
        now = compliance(found.of(name))
        values.append((device, {COMPLIANCE_FIELD: now.value, CHECKED_AT_FIELD: at.isoformat()}))
        line = journal_line(device, now, found.of(name), remediated.of(name))
        if line is not None:
            entries.append(
                JournalEntry(device, line, "success" if now == Compliance.COMPLIANT else "warning")
            )
    set_devices_custom_fields(nb, values)
    write_journal(nb, entries, news_only=True)
    return {e.device.name: e.comments for e in entries}


# --- the report -----------------------------------------------------------------------------------
def _first_lines(results: Sequence[Result], shown: int = 10) -> str:
    lines = [x for r in results for x in r.diff]
    return "; ".join(lines[:shown]) + (" ..." if len(lines) > shown else "")


def rows(results: Results) -> list[dict[str, str]]:
    """One row per device and area: each area's findings as Results.rows has them, with the
    compliance they mean and the first differing lines."""
    table = []
    for area in sorted({r.step for r in results}):
        table += _area_rows(Results(r for r in results if r.step == area), area)
    return sorted(table, key=lambda row: (row["device"], row["area"]))


def _area_rows(found: Results, area: str) -> list[dict[str, str]]:
    def status(name: str) -> str:
        return compliance(found.of(name)).value

    def lines(name: str) -> str:
        return _first_lines(found.of(name))

    return found.rows(sorted({r.target for r in found}), area=lambda _: area, status=status, diff=lines)


def artifact(
    results: Results, sites: Sequence[str], remediation_dry_run: bool
) -> tuple[str, str, list[str], list[dict[str, str]]]:
    """The sweep as the run's artifact (atlas.prefect.reports.publish): key, title, summary, rows."""
    drift = results.changed_targets
    unchecked = sorted({r.target for r in results.failed})
    return (
        "config-sweep-" + ("-".join(sorted(sites)) if sites else "all"),
        "Configuration-consistency sweep" + (" (remediation dry run)" if remediation_dry_run else ""),
        [
            f"devices checked: **{len({r.target for r in results})}**",
            f"drift: **{len(drift)}** {', '.join(drift)}",
            f"not checked: **{len(unchecked)}** {', '.join(unchecked)}",
        ],
        rows(results),
    )


def incomplete(results: Results) -> str | None:
    """Why the sweep is partial, naming every device that could not be checked; None when none."""
    unchecked = sorted({r.target for r in results.failed})
    if not unchecked:
        return None
    return f"partial sweep: {len(unchecked)} device(s) not checked: " + "; ".join(
        f"{r.target} ({r.step}): {r.detail}" for r in results.failed
    )
