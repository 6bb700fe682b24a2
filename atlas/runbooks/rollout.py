"""Image rollout: which hosts move to a version, in which waves, and moving one wave.

Planning is pure (hosts from NetBox in, waves out). A wave is moved host by host in one playbook
run: drain, install A/B (playbooks/image-apply.yml), health check, undrain; hosts that fail are
switched back to their previous image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from atlas.core.model import Credential, Device, DeviceStatus, Role, Site
from atlas.core.parallel import each_device
from atlas.core.run import Result
from atlas.hosts import baseline
from atlas.hosts.runner import Host, run_playbook
from atlas.images.catalog import Manifest
from atlas.net.sessions import DeviceUnreachable
from atlas.sot.schema import IMAGE_VERSION_FIELD
from atlas.workloads import DrainFailed, Workloads

PLAYBOOK = "image-apply.yml"
VERSION_FIELD = IMAGE_VERSION_FIELD
SERVER_ROLES = tuple(r for r in Role if r.is_server)

CredentialOf = Callable[[Device], Credential]
Log = Callable[[str], None]


def version_of(device: Device) -> str | None:
    value = device.custom_fields.get(VERSION_FIELD)
    return str(value) if value else None


def scope_problems(site: Site, rack: str | None, role: str | None) -> list[str]:
    problems = []
    if rack is not None and rack not in {r.name for r in site.racks}:
        problems.append(f"rack {rack!r} is not in site {site.name}")
    if role is not None and role not in {r.value for r in SERVER_ROLES}:
        problems.append(f"role {role!r} is not a server role ({', '.join(r.value for r in SERVER_ROLES)})")
    return problems


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


@dataclass
class WaveOutcome:
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # host -> why
    rolled_back: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)  # failed and could not be rolled back


def image_hosts(hosts: list[Device], action: str, manifest: Manifest, artifact: Path) -> list[Host]:
    assert all(h.mgmt_address is not None for h in hosts)  # NetBox preflight
    return [
        Host(
            name=h.name,
            address=str(h.mgmt_address.ip) if h.mgmt_address else "",
            variables={
                "atlas_image_action": action,
                "atlas_image_version": manifest.version,
                "atlas_image_sha256": manifest.sha256,
                "atlas_image_artifact": str(artifact),
                "atlas_service_manager": "supervisor",
            },
        )
        for h in hosts
    ]


def _playbook(
    hosts: list[Device], action: str, manifest: Manifest, artifact: Path, cred_of: CredentialOf, log: Log
) -> dict[str, Result]:
    results: dict[str, Result] = {}
    groups: dict[Credential, list[Device]] = {}
    for h in hosts:
        groups.setdefault(cred_of(h), []).append(h)
    for cred, members in groups.items():
        for r in run_playbook(PLAYBOOK, image_hosts(members, action, manifest, artifact), cred, on_event=log):
            results[r.target] = r
    return results


def routing_problems(site: Site, hosts: list[Device], cred_of: CredentialOf) -> dict[str, str]:
    """A host whose addresses or routes are no longer what NetBox says did not survive its image."""
    devices = {d.name: d for d in site.devices}
    drift = baseline.read_drift(baseline.inventory(site, devices, hosts), devices, cred_of)
    return {
        name: f"state not readable: {found}" if isinstance(found, DeviceUnreachable) else "; ".join(found)
        for name, found in drift.items()
        if found
    }


def _each(step: Callable[[Device], None], hosts: list[Device]) -> dict[str, str]:
    """`step` on every host at once; the hosts it failed on, with why."""

    def attempt(h: Device) -> str | None:
        try:
            step(h)
        except DrainFailed as e:
            return str(e)
        return None

    return {h.name: e for h, e in zip(hosts, each_device(attempt, hosts), strict=True) if e}


def move_wave(
    site: Site,
    hosts: list[Device],
    manifest: Manifest,
    artifact: Path,
    workloads: Workloads,
    cred_of: CredentialOf,
    log: Log,
) -> WaveOutcome:
    """Drain, install, health-check (services, then routing), undrain; failed hosts go back to their
    previous image and are undrained only if that image is healthy."""
    outcome = WaveOutcome()

    drain_errors = _each(workloads.drain, hosts)
    for name, error in drain_errors.items():
        outcome.failed[name] = f"drain: {error}"
    drained = [h for h in hosts if h.name not in drain_errors]
    log(f"drained: {', '.join(h.name for h in drained) or 'none'}")
    applied = _playbook(drained, "apply", manifest, artifact, cred_of, log)
    healthy = [h for h in drained if not applied[h.name].failed]
    for h in drained:
        if applied[h.name].failed:
            outcome.failed[h.name] = applied[h.name].detail
    for name, why in routing_problems(site, healthy, cred_of).items():
        outcome.failed[name] = f"routing after the new image: {why}"
    back = [h for h in drained if h.name in outcome.failed]
    if back:
        log(f"rolling back: {', '.join(h.name for h in back)}")
        for name, r in _playbook(back, "rollback", manifest, artifact, cred_of, log).items():
            if r.failed:
                outcome.stuck[name] = r.detail
            else:
                outcome.rolled_back.append(name)
    outcome.moved = [h.name for h in drained if h.name not in outcome.failed]
    to_undrain = [h for h in drained if h.name in outcome.moved or h.name in outcome.rolled_back]

    for name, error in _each(workloads.undrain, to_undrain).items():
        outcome.stuck[name] = f"undrain: {error}"
    return outcome
