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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pynetbox
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, Site
from atlas.core.run import Target, TargetMap
from atlas.core.settings import load_settings
from atlas.images.catalog import VERSION_PATTERN, AwsSettings, Catalog, ImageError, Manifest
from atlas.prefect.approvals import Approval, NotApproved, ask
from atlas.prefect.forms import OPTIONAL_NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.progress import Progress, RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import run_name, sources
from atlas.runbooks import rollout
from atlas.runbooks.rollout import RolloutRefused as RolloutRefused
from atlas.runbooks.rollout import RolloutReport as RolloutReport
from atlas.runbooks.rollout import RolloutStopped as RolloutStopped
from atlas.secrets import AWS_PATH, Vault
from atlas.sot.read import NotInNetBox, read_site
from atlas.workloads import workloads_from


class WaveApproval(Approval):
    approve: bool = Field(False, description="Tick to go on with the next wave; leave it to stop here")


@task(name="read the scope from NetBox", cache_policy=NO_CACHE)
def read_scope(
    site: str, rack: str | None, role: str | None
) -> tuple[pynetbox.api, Vault, Site, list[Device]]:
    nb, vault = sources()
    try:
        view = read_site(nb, site)
    except NotInNetBox as e:
        raise RolloutRefused([str(e)]) from None
    return nb, vault, view, rollout.scoped_hosts(view, rack, role)


@task(name="image: download and check against its manifest", cache_policy=NO_CACHE)
def fetch_image(vault: Vault, version: str, workdir: Path) -> Manifest:
    try:
        return Catalog(AwsSettings.from_secret(vault.read(AWS_PATH))).fetch_verified(
            version, workdir / "image.tar.gz"
        )
    except ImageError as e:
        raise RolloutRefused([str(e)]) from None


@task(name="credentials from Vault", cache_policy=NO_CACHE)
def credentials(vault: Vault, hosts: list[Device]) -> TargetMap:
    try:
        return rollout.rollout_targets(vault, hosts)
    except Refused as e:
        raise RolloutRefused(e.problems) from None


@task(name="preflight: hosts reachable and as their baseline", cache_policy=NO_CACHE)
def preflight(site: Site, hosts: TargetMap) -> None:
    rollout.preflight(site, list(hosts.values()))


@task(name="wave", task_run_name="wave {number}: {names}", cache_policy=NO_CACHE)
def move_wave(
    number: int, names: str, site: Site, hosts: list[Target], manifest: Manifest, artifact: Path
) -> rollout.WaveOutcome:
    log = get_run_logger()
    by_name = {h.name: h for h in hosts}

    def cred_of(d: Device) -> Credential:
        return by_name[d.name].credential

    workloads = workloads_from(load_settings(), cred_of)
    outcome = rollout.move_wave(site, hosts, manifest, artifact, workloads, RunEvents())
    for name, why in {**outcome.failed, **outcome.stuck}.items():
        log.error("%s: %s", name, why)
    return outcome


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(
    nb: pynetbox.api, plan: rollout.RolloutPlan, outcome: rollout.WaveOutcome, hosts: list[Target]
) -> None:
    rollout.record(nb, plan, outcome, {h.name: h.device for h in hosts}, run_name())


@dataclass(frozen=True)
class Pause:
    """Between two waves: go on (none), wait `seconds` (time), or ask a person (approval) and wait
    `timeout` seconds for the answer."""

    mode: str
    seconds: int
    timeout: int

    def between(self, done: dict[str, str], following: list[str], approvals: list[str]) -> str | None:
        """None to go on; otherwise why the rollout stops here."""
        if self.mode == "time":
            get_run_logger().info("pausing %d s before the next wave", self.seconds)
            time.sleep(self.seconds)
        elif self.mode == "approval":
            try:
                answer = ask(WaveApproval, rollout.approval_question(done, following), self.timeout)
            except NotApproved as e:
                return f"{e}; stopped before wave {', '.join(following)}"
            approvals.append(
                f"{', '.join(following)}: approved by {answer.approver}: {answer.comment or 'no comment'}"
            )
            get_run_logger().info("next wave approved by %s: %s", answer.approver, answer.comment)
        return None


def waves(
    nb: pynetbox.api,
    site: Site,
    plan: rollout.RolloutPlan,
    hosts: TargetMap,
    image: tuple[Manifest, Path],
    budget: int,
    pause: Pause,
    report: RolloutReport,
) -> int:
    """The canary, then each wave under its racks' locks, until the plan is done or the rollout
    stops (the report says why); the number of hosts that failed."""
    progress = Progress(f"image-rollout {plan.version} in {site.name}", total=len(plan.hosts))
    failed = 0
    with exclusive(f"image-rollout-{site.name}"):
        for number, wave in enumerate(plan.waves):
            members = [hosts[n] for n in wave]
            with exclusive(*rack_limits(h.device for h in members)):
                outcome = move_wave(number, ", ".join(wave), site, members, *image)
                record(nb, plan, outcome, members)
            report.after_wave(outcome, wave)
            failed += len(outcome.failed)
            progress.finished(rollout.wave_done(number, outcome), count=len(wave))
            stop = rollout.wave_stops(number, outcome, failed, budget)
            if stop is None and number + 1 < len(plan.waves):
                done = {name: report.hosts[name].result for name in wave}
                stop = pause.between(done, plan.waves[number + 1], report.approvals)
            if stop:
                progress.end(f"stopped: {stop}")
                report.stop(stop)
                break
    return failed


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
    nb, vault, view, hosts = read_scope(site, rack or None, None if role == "any" else role)
    plan = rollout.plan_rollout(hosts, version, canary, wave_size)
    report = rollout.start_report(plan, hosts, dry_run)
    with tempfile.TemporaryDirectory(prefix="atlas-image-") as tmp:
        manifest = fetch_image(vault, version, Path(tmp))
        for line in rollout.wave_lines(plan):
            get_run_logger().info("%s", line)
        if dry_run or not plan.waves:
            publish(*rollout.artifact(report, site))
            return report
        devices = credentials(vault, [h for h in hosts if h.name in plan.hosts])
        preflight(view, devices)
        pauses = Pause(pause, pause_seconds, approval_timeout_s)
        image = (manifest, Path(tmp) / "image.tar.gz")
        failed = waves(nb, view, plan, devices, image, failure_budget, pauses, report)
    publish(*rollout.artifact(report, site))
    if report.stopped:
        raise RolloutStopped(report.stopped)
    if failed:
        raise RolloutStopped(
            f"{failed} host(s) failed within the budget and were rolled back; see the report"
        )
    return report
