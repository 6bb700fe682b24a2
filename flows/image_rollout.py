"""image-rollout: hosts move to a new immutable image version, canary first, then in waves.

Runbook: read the scope from NetBox -> the image: downloaded from the catalog and checked against its
sha256 manifest (a corrupt artifact stops here, before any host is drained) -> plan: hosts not yet on
the version, waves with one host per rack where possible (the dry run stops here) -> preflight: every
planned host answers SSH and matches its baseline -> canary, then each wave: drain, install into the
inactive slot, switch, restart, health check (services, addresses and routes), undrain, NetBox
image_version + journal; failed hosts are switched back -> stop when the canary fails or failures
exceed the budget -> between waves: no pause, a timed pause or an approval -> report, every host's
before and after.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from atlas.core.errors import Failed, Refused
from atlas.core.model import Device, Site
from atlas.images.catalog import VERSION_PATTERN, AwsSettings, Catalog, ImageError, Manifest
from atlas.prefect.approvals import Approval, NotApproved, ask
from atlas.prefect.forms import OPTIONAL_NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.progress import Progress
from atlas.prefect.reports import publish
from atlas.prefect.sources import run_name, sources
from atlas.runbooks import rollout
from atlas.runbooks.bringup import wait_reachable
from atlas.runbooks.site import credentials
from atlas.secrets import AWS_PATH
from atlas.sot.read import NotInNetBox, read_site
from atlas.sot.write import add_journal_entry, set_custom_fields
from atlas.workloads.lab import LabServices


class RolloutRefused(Refused):
    headline = "{n} problem(s); no host was drained or changed"


class RolloutStopped(Failed):
    pass


class WaveApproval(Approval):
    approve: bool = Field(False, description="Tick to go on with the next wave; leave it to stop here")


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


@task(name="read the scope from NetBox", cache_policy=NO_CACHE)
def read_scope(site: str, rack: str | None, role: str | None) -> tuple[Any, Any, Site, list[Device]]:
    nb, vault = sources()
    try:
        view = read_site(nb, site)
    except NotInNetBox as e:
        raise RolloutRefused([str(e)]) from None
    problems = rollout.scope_problems(view, rack, role)
    hosts = rollout.hosts_in_scope(view, rack, role) if not problems else []
    if not problems and not hosts:
        problems.append(
            f"no active server in {site}{f' rack {rack}' if rack else ''}{f' role {role}' if role else ''}"
        )
    if problems:
        raise RolloutRefused(problems)
    return nb, vault, view, hosts


@task(name="image: download and check against its manifest", cache_policy=NO_CACHE)
def fetch_image(vault: Any, version: str, workdir: Path) -> Manifest:
    try:
        return Catalog(AwsSettings.from_secret(vault.read(AWS_PATH))).fetch_verified(
            version, workdir / "image.tar.gz"
        )
    except ImageError as e:
        raise RolloutRefused([str(e)]) from None


@task(name="preflight: hosts reachable and as their baseline", cache_policy=NO_CACHE)
def preflight(site: Site, hosts: list[Device], cred_of: rollout.CredentialOf) -> None:
    problems = wait_reachable(tuple(hosts), timeout=20)
    unreachable = {p.split(":")[0] for p in problems}
    reachable = [h for h in hosts if h.name not in unreachable]
    problems += [
        f"{name}: differs from its baseline before the rollout: {why}"
        for name, why in rollout.routing_problems(site, reachable, cred_of).items()
    ]
    if problems:
        raise RolloutRefused(problems)


@task(name="wave", task_run_name="wave {number}: {names}", cache_policy=NO_CACHE)
def move_wave(
    number: int,
    names: str,
    site: Site,
    hosts: list[Device],
    manifest: Manifest,
    artifact: Path,
    cred_of: rollout.CredentialOf,
) -> rollout.WaveOutcome:
    log = get_run_logger()
    outcome = rollout.move_wave(site, hosts, manifest, artifact, LabServices(cred_of), cred_of, log.info)
    for name, why in {**outcome.failed, **outcome.stuck}.items():
        log.error("%s: %s", name, why)
    return outcome


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: Any, plan: rollout.RolloutPlan, outcome: rollout.WaveOutcome) -> None:
    for name in outcome.moved:
        set_custom_fields(nb, name, {rollout.VERSION_FIELD: plan.version})
        add_journal_entry(
            nb,
            name,
            f"image-rollout {run_name()}: {plan.before[name] or 'none'} -> {plan.version}",
            kind="success",
        )
    for name, why in outcome.failed.items():
        state = (
            "rolled back"
            if name in outcome.rolled_back
            else "NOT rolled back: " + outcome.stuck.get(name, "")
        )
        add_journal_entry(
            nb, name, f"image-rollout {run_name()}: {plan.version} failed ({why}); {state}", kind="danger"
        )


def pause_between(
    mode: str, seconds: int, timeout: int, done: dict[str, str], following: list[str], approvals: list[str]
) -> str | None:
    """None to go on; otherwise why the rollout stops here."""
    if mode == "time":
        get_run_logger().info("pausing %d s before the next wave", seconds)
        time.sleep(seconds)
    elif mode == "approval":
        try:
            answer = ask(
                WaveApproval,
                "### Wave done\n\n"
                + "".join(f"* {host}: {result}\n" for host, result in done.items())
                + f"\n### Next wave: {', '.join(following)}\n\nTick **approve** to go on; "
                "leave it unticked to stop the rollout here (nothing is rolled back).",
                timeout,
            )
        except NotApproved as e:
            return f"{e}; stopped before wave {', '.join(following)}"
        approvals.append(
            f"{', '.join(following)}: approved by {answer.approver}: {answer.comment or 'no comment'}"
        )
        get_run_logger().info("next wave approved by %s: %s", answer.approver, answer.comment)
    return None


@flow(name="image-rollout")
@form
def image_rollout(
    version: Annotated[str, Field(pattern=VERSION_PATTERN, description="Image version, as published")],
    site: SiteName,
    rack: Annotated[
        str, Field(pattern=OPTIONAL_NAME_PATTERN, description="Only this rack; empty: the whole site")
    ] = "",
    role: Annotated[
        Literal["any", "compute", "storage"], Field(description="Only servers of this role")
    ] = "any",
    canary: Annotated[
        int, Field(ge=1, le=10, description="Hosts in the first wave; any failure there stops")
    ] = 1,
    wave_size: Annotated[int, Field(ge=1, le=100, description="Hosts per wave after the canary")] = 2,
    failure_budget: Annotated[
        int,
        Field(ge=0, le=100, description="Hosts that may fail (and be rolled back) before the rollout stops"),
    ] = 0,
    pause: Annotated[
        Literal["none", "time", "approval"], Field(description="Between waves: go on, wait, or ask a person")
    ] = "none",
    pause_seconds: Annotated[int, Field(ge=0, le=86400, description="Wait between waves (pause=time)")] = 60,
    approval_timeout_s: Annotated[
        int, Field(ge=60, le=86400, description="How long to wait for an approval (pause=approval)")
    ] = 3600,
    dry_run: DryRun = True,
) -> RolloutReport:
    log = get_run_logger()
    nb, vault, view, hosts = read_scope(site, rack or None, None if role == "any" else role)
    plan = rollout.plan_rollout(hosts, version, canary, wave_size)
    by_name = {h.name: h for h in hosts}
    outcomes = {
        h.name: HostOutcome(
            rack=h.rack or "",
            before=plan.before[h.name],
            after=plan.before[h.name],
            result="already on version" if h.name in plan.on_version else "planned",
        )
        for h in hosts
    }
    report = RolloutReport(version=version, dry_run=dry_run, waves=plan.waves, hosts=outcomes)
    with tempfile.TemporaryDirectory(prefix="atlas-image-") as tmp:
        manifest = fetch_image(vault, version, Path(tmp))
        for number, wave in enumerate(plan.waves):
            log.info("%s %d: %s", "canary" if number == 0 else "wave", number, ", ".join(wave))
        if dry_run or not plan.waves:
            publish_report(report, site)
            return report
        creds = credentials(vault, hosts)

        def cred_of(d: Device) -> Any:
            return creds[(d.site, d.role.value)]

        preflight(view, [by_name[n] for n in plan.hosts], cred_of)
        failed = 0
        progress = Progress(f"image-rollout {version} in {site}", total=len(plan.hosts))
        with exclusive(f"image-rollout-{site}"):
            for number, wave in enumerate(plan.waves):
                with exclusive(*rack_limits(by_name[n] for n in wave)):
                    outcome = move_wave(
                        number,
                        ", ".join(wave),
                        view,
                        [by_name[n] for n in wave],
                        manifest,
                        Path(tmp) / "image.tar.gz",
                        cred_of,
                    )
                    record(nb, plan, outcome)
                for name in wave:
                    outcomes[name].result = (
                        "moved"
                        if name in outcome.moved
                        else "rolled back"
                        if name in outcome.rolled_back
                        else "failed"
                    )
                    if name in outcome.moved:
                        outcomes[name].after = version
                failed += len(outcome.failed)
                progress.finished(
                    f"{'canary' if number == 0 else f'wave {number}'}: {len(outcome.moved)} moved, "
                    f"{len(outcome.failed)} failed",
                    count=len(wave),
                )
                if rollout.stops_rollout(failed, failure_budget, is_canary=number == 0):
                    report.stopped = f"{'canary' if number == 0 else f'wave {number}'} failed: " + "; ".join(
                        f"{n}: {w}" for n, w in outcome.failed.items()
                    )
                elif number + 1 < len(plan.waves):
                    report.stopped = pause_between(
                        pause,
                        pause_seconds,
                        approval_timeout_s,
                        {name: outcomes[name].result for name in wave},
                        plan.waves[number + 1],
                        report.approvals,
                    )
                if report.stopped:
                    progress.end(f"stopped: {report.stopped}")
                    for name in plan.hosts:
                        if outcomes[name].result == "planned":
                            outcomes[name].result = "not reached"
                    break
    publish_report(report, site)
    if report.stopped:
        raise RolloutStopped(report.stopped)
    if failed:
        raise RolloutStopped(
            f"{failed} host(s) failed within the budget and were rolled back; see the report"
        )
    return report


def publish_report(report: RolloutReport, site: str) -> None:
    counts: dict[str, int] = {}
    for o in report.hosts.values():
        counts[o.result] = counts.get(o.result, 0) + 1
    publish(
        f"image-rollout-{site}",
        f"Image rollout of {report.version}" + (" (dry run: plan)" if report.dry_run else ""),
        [
            *(f"{'canary' if i == 0 else f'wave {i}'}: {', '.join(w)}" for i, w in enumerate(report.waves)),
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
