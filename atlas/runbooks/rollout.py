"""Image rollout: which hosts move to a version, in which waves, and moving one wave.

Planning is pure (hosts from NetBox in, waves out). A wave is moved host by host in one playbook
run: drain, install A/B (playbooks/image-apply.yml), health check, undrain; hosts that fail are
switched back to their previous image. Past preflight every host is a Target (address and
credential resolved); the report says, host by host, what the rollout did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pynetbox
from pydantic import BaseModel

from atlas.core.errors import Failed, Refused
from atlas.core.model import Credential, Device, DeviceStatus, Role, Site
from atlas.core.run import Events, Result, Results, Target, TargetMap, run_each
from atlas.hosts import baseline
from atlas.hosts.runner import Host, run_playbook
from atlas.hosts.services import playbook_variables, service_problems
from atlas.images.catalog import Manifest
from atlas.net.routing import design_of
from atlas.net.sessions import wait_reachable
from atlas.runbooks.site import vault_targets
from atlas.secrets import Vault
from atlas.sot.schema import IMAGE_VERSION_FIELD
from atlas.sot.write import JournalEntry, set_devices_custom_fields, write_journal
from atlas.workloads import Workloads

PLAYBOOK = "image-apply.yml"
VERSION_FIELD = IMAGE_VERSION_FIELD
SERVER_ROLES = tuple(r for r in Role if r.is_server)

CredentialOf = Callable[[Device], Credential]


class RolloutRefused(Refused):
    headline = "{n} problem(s); no host was drained or changed"


class RolloutStopped(Failed):
    pass


def version_of(device: Device) -> str | None:
    value = device.custom_fields.get(VERSION_FIELD)
    return str(value) if value else None


def scope_problems(site: Site, rack: str | None, role: str | None) -> list[str]:
    problems = []
    if rack is not None and rack not in {r.name for r in site.racks}:
        problems.append(f"rack {rack!r} is not in site {site.name}")
    if role is not None and role not in {r.value for r in SERVER_ROLES}:
        problems.append(f"role {role!r} is not a server role ({', '.join(r.value for r in SERVER_ROLES)})")
    return problems or service_problems(hosts_in_scope(site, rack, role))


def hosts_in_scope(site: Site, rack: str | None, role: str | None) -> list[Device]:
    """The active servers of the scope: planned or failed ones run no image to move."""
    return sorted(
        (
            d
            for d in site.devices
            if d.role.is_server
            and d.status == DeviceStatus.ACTIVE
            and (rack is None or d.rack == rack)
            and (role is None or d.role.value == role)
        ),
        key=lambda d: d.name,
    )


def scoped_hosts(site: Site, rack: str | None, role: str | None) -> list[Device]:
    """The hosts of the scope, or RolloutRefused naming every problem with it (none in it, too)."""
    problems = scope_problems(site, rack, role)
    hosts = hosts_in_scope(site, rack, role) if not problems else []
    if not problems and not hosts:
        problems.append(
            f"no active server in {site.name}{f' rack {rack}' if rack else ''}{f' role {role}' if role else ''}"
        )
    if problems:
        raise RolloutRefused(problems)
    return hosts


@dataclass(frozen=True)
class RolloutPlan:
    version: str
    waves: list[list[str]]  # the first is the canary
    on_version: list[str]  # already there: nothing to do
    before: dict[str, str | None]  # every host in scope: its version now

    @property
    def hosts(self) -> list[str]:
        return [h for wave in self.waves for h in wave]


def _next_wave(pending: dict[str, list[str]], size: int) -> list[str]:
    """Up to `size` hosts, one per rack per round, fullest racks first: a wave takes a second host of
    a rack only when fewer racks than `size` have hosts left."""
    wave: list[str] = []
    while len(wave) < size and any(pending.values()):
        for rack in sorted(pending, key=lambda r: (-len(pending[r]), r)):
            if pending[rack] and len(wave) < size:
                wave.append(pending[rack].pop(0))
    return wave


def plan_rollout(hosts: Iterable[Device], version: str, canary: int, wave_size: int) -> RolloutPlan:
    hosts = list(hosts)
    pending: dict[str, list[str]] = {}
    for h in sorted(hosts, key=lambda d: d.name):
        if version_of(h) != version:
            pending.setdefault(h.rack or "", []).append(h.name)
    waves = []
    first = _next_wave(pending, canary)
    if first:
        waves.append(first)
    while any(pending.values()):
        waves.append(_next_wave(pending, wave_size))
    return RolloutPlan(
        version=version,
        waves=waves,
        on_version=sorted(h.name for h in hosts if version_of(h) == version),
        before={h.name: version_of(h) for h in hosts},
    )


def stops_rollout(failed: int, budget: int, is_canary: bool) -> bool:
    """A failing canary always stops the rollout; later waves, once more hosts failed than the budget."""
    return failed > 0 if is_canary else failed > budget


def image_hosts(hosts: Sequence[Target], action: str, manifest: Manifest, artifact: Path) -> list[Host]:
    return [
        Host(
            name=h.name,
            address=h.address,
            variables={
                "atlas_image_action": action,
                "atlas_image_version": manifest.version,
                "atlas_image_sha256": manifest.sha256,
                "atlas_image_artifact": str(artifact),
                **playbook_variables(h.device),
            },
        )
        for h in hosts
    ]


def _playbook(
    hosts: Sequence[Target], action: str, manifest: Manifest, artifact: Path, events: Events
) -> Results:
    """The image playbook's `action` on `hosts`, one run per distinct credential."""
    groups: dict[Credential, list[Target]] = {}
    for h in hosts:
        groups.setdefault(h.credential, []).append(h)
    results = Results()
    for cred, members in groups.items():
        results += run_playbook(
            PLAYBOOK, image_hosts(members, action, manifest, artifact), cred, on_event=events.info
        )
    return results


# --- hosts, as Targets ------------------------------------------------------------------------------
def rollout_targets(vault: Vault, hosts: Iterable[Device]) -> TargetMap:
    """The hosts as Targets, credentials read once per site and role."""
    return TargetMap(vault_targets(vault, hosts))


def routing_problems(site: Site, hosts: Sequence[Target]) -> dict[str, str]:
    """A host whose addresses or routes are no longer what NetBox says did not survive its image."""
    devices = {d.name: d for d in site.devices}
    by_name = {h.name: h for h in hosts}
    inventory = baseline.inventory(site, devices, hosts)
    drift = baseline.read_drift(
        inventory, devices, lambda d: by_name[d.name].credential, design=design_of(site)
    )
    return {
        h.name: f"state not readable: {drift.errors[h.name]}"
        if h.name in drift.errors
        else "; ".join(drift.values[h.name])
        for h in hosts
        if h.name in drift.errors or drift.values.get(h.name)
    }


def preflight(site: Site, hosts: Sequence[Target]) -> None:
    """Every planned host answers SSH and matches its baseline before the first drain; RolloutRefused
    naming every one that does not."""
    unreachable = wait_reachable(hosts, timeout=20)
    reachable = [h for h in hosts if h.name not in unreachable]
    problems = list(unreachable.values()) + [
        f"{name}: differs from its baseline before the rollout: {why}"
        for name, why in routing_problems(site, reachable).items()
    ]
    if problems:
        raise RolloutRefused(problems)


# --- a wave -----------------------------------------------------------------------------------------
@dataclass
class WaveOutcome:
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # host -> why
    rolled_back: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)  # failed and could not be rolled back


def _each(step: str, act: Callable[[Device], None], hosts: Sequence[Target]) -> Results:
    """`act` (drain, undrain) on every host at once; a host it raised on is its own failed result."""

    def one(h: Target) -> Result:
        act(h.device)
        return Result(target=h.name, step=step, changed=True, detail=f"{step} done")

    return run_each(one, hosts, step)


def move_wave(
    site: Site,
    hosts: Sequence[Target],
    manifest: Manifest,
    artifact: Path,
    workloads: Workloads,
    events: Events,
) -> WaveOutcome:
    """Drain, install, health-check (services, then routing), undrain; failed hosts go back to their
    previous image and are undrained only if that image is healthy."""
    outcome = WaveOutcome()

    for r in _each("drain", workloads.drain, hosts).failed:
        outcome.failed[r.target] = f"drain: {r.error}"
    drained = [h for h in hosts if h.name not in outcome.failed]
    events.info(f"drained: {', '.join(h.name for h in drained) or 'none'}")
    for r in _playbook(drained, "apply", manifest, artifact, events).failed:
        outcome.failed[r.target] = r.detail
    healthy = [h for h in drained if h.name not in outcome.failed]
    for name, why in routing_problems(site, healthy).items():
        outcome.failed[name] = f"routing after the new image: {why}"
    back = [h for h in drained if h.name in outcome.failed]
    if back:
        events.info(f"rolling back: {', '.join(h.name for h in back)}")
        for r in _playbook(back, "rollback", manifest, artifact, events):
            if r.failed:
                outcome.stuck[r.target] = r.detail
            else:
                outcome.rolled_back.append(r.target)
    outcome.moved = [h.name for h in drained if h.name not in outcome.failed]
    to_undrain = [h for h in drained if h.name in outcome.moved or h.name in outcome.rolled_back]

    for r in _each("undrain", workloads.undrain, to_undrain).failed:
        outcome.stuck[r.target] = f"undrain: {r.error}"
    return outcome


def record(
    nb: pynetbox.api, plan: RolloutPlan, outcome: WaveOutcome, devices: Mapping[str, Device], run: str
) -> None:
    """The moved hosts' image_version in one bulk update; a journal entry on every host of the wave
    that moved or failed, in one read and one write."""
    moved = [devices[name] for name in outcome.moved]
    set_devices_custom_fields(nb, [(d, {VERSION_FIELD: plan.version}) for d in moved])
    entries = [
        JournalEntry(d, f"image-rollout {run}: {plan.before[d.name] or 'none'} -> {plan.version}", "success")
        for d in moved
    ]
    for name, why in outcome.failed.items():
        state = (
            "rolled back"
            if name in outcome.rolled_back
            else "NOT rolled back: " + outcome.stuck.get(name, "")
        )
        entries.append(
            JournalEntry(
                devices[name], f"image-rollout {run}: {plan.version} failed ({why}); {state}", "danger"
            )
        )
    write_journal(nb, entries)


# --- the report -----------------------------------------------------------------------------------
def wave_name(number: int) -> str:
    return "canary" if number == 0 else f"wave {number}"


class HostOutcome(BaseModel):
    rack: str
    before: str | None
    after: str | None
    result: str  # moved, already on version, rolled back, failed, not reached, planned


class RolloutReport(BaseModel):
    version: str
    dry_run: bool
    waves: list[list[str]]
    hosts: dict[str, HostOutcome]
    stopped: str | None = None
    approvals: list[str] = []

    @property
    def changed(self) -> list[str]:
        return sorted(h for h, o in self.hosts.items() if o.result == "moved")

    def after_wave(self, outcome: WaveOutcome, wave: Iterable[str]) -> None:
        """Each host of the wave as the wave left it."""
        for name in wave:
            moved = name in outcome.moved
            host = self.hosts[name]
            host.result = "moved" if moved else "rolled back" if name in outcome.rolled_back else "failed"
            host.after = self.version if moved else host.after

    def stop(self, why: str) -> None:
        """The rollout stops here: the hosts still planned are not reached."""
        self.stopped = why
        for host in self.hosts.values():
            if host.result == "planned":
                host.result = "not reached"


def start_report(plan: RolloutPlan, hosts: Iterable[Device], dry_run: bool) -> RolloutReport:
    """Every host in scope: already on the version, or planned."""
    outcomes = {
        h.name: HostOutcome(
            rack=h.rack or "",
            before=plan.before[h.name],
            after=plan.before[h.name],
            result="already on version" if h.name in plan.on_version else "planned",
        )
        for h in hosts
    }
    return RolloutReport(version=plan.version, dry_run=dry_run, waves=plan.waves, hosts=outcomes)


def wave_lines(plan: RolloutPlan) -> list[str]:
    """The plan, wave by wave, for the run's log."""
    return [f"{'canary' if n == 0 else 'wave'} {n}: {', '.join(w)}" for n, w in enumerate(plan.waves)]


def wave_done(number: int, outcome: WaveOutcome) -> str:
    return f"{wave_name(number)}: {len(outcome.moved)} moved, {len(outcome.failed)} failed"


def wave_stops(number: int, outcome: WaveOutcome, failed: int, budget: int) -> str | None:
    """Why the rollout stops after this wave (`failed`: hosts failed so far), or None."""
    if not stops_rollout(failed, budget, is_canary=number == 0):
        return None
    return f"{wave_name(number)} failed: " + "; ".join(f"{n}: {w}" for n, w in outcome.failed.items())


def approval_question(done: Mapping[str, str], following: Sequence[str]) -> str:
    """What an approver reads between two waves: how the last went, which hosts come next."""
    return (
        "### Wave done\n\n"
        + "".join(f"* {host}: {result}\n" for host, result in done.items())
        + f"\n### Next wave: {', '.join(following)}\n\nTick **approve** to go on; "
        "leave it unticked to stop the rollout here (nothing is rolled back)."
    )


def artifact(report: RolloutReport, site: str) -> tuple[str, str, list[str], list[dict[str, str]]]:
    """The report as the run's artifact (atlas.prefect.reports.publish): key, title, summary, rows."""
    counts: dict[str, int] = {}
    for o in report.hosts.values():
        counts[o.result] = counts.get(o.result, 0) + 1
    return (
        f"image-rollout-{site}",
        f"Image rollout of {report.version}" + (" (dry run: plan)" if report.dry_run else ""),
        [
            *(f"{wave_name(i)}: {', '.join(w)}" for i, w in enumerate(report.waves)),
            *([] if report.waves else ["no change: every host in scope is on this version"]),
            ", ".join(f"{n} {r}" for r, n in sorted(counts.items())),
            *(f"wave {a}" for a in report.approvals),
            *([f"stopped: {report.stopped}"] if report.stopped else []),
        ],
        [
            {
                "host": h,
                "rack": o.rack,
                "before": o.before or "none",
                "after": o.after or "none",
                "result": o.result,
            }
            for h, o in sorted(report.hosts.items())
        ],
    )
