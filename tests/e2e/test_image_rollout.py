"""image-rollout end to end: images published to the lab's moto, installed A/B on the lab's servers by
Ansible, their service a systemd unit on each server, NetBox updated; hosts rebooted after a rollout and
after a rollback boot the version they were left on. In file order, on fra1 with
both racks brought up first; at the end the image's service, announced by every compute server from
its own FRR, is reached from the client behind the core."""

from __future__ import annotations

import json

import pynetbox
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
)
from prefect.client.schemas.sorting import ArtifactSort

from atlas.core.model import Site
from atlas.core.run import poll_until
from atlas.images.catalog import AwsSettings, Catalog
from atlas.lab import procs
from atlas.lab.images import build
from atlas.lab.lab import Lab
from atlas.prefect.locks import rack_limit_name
from atlas.runbooks.traffic import probe
from atlas.secrets import AWS_PATH, Vault
from atlas.workloads.systemd_services import MARK, SystemdServices
from flows.fabric import fabric_apply
from flows.image_rollout import RolloutRefused, RolloutStopped, image_rollout
from flows.rack_bringup import rack_bringup
from tests.e2e.runs import held_back, kill_when, run_answering

pytestmark = pytest.mark.usefixtures("flow_env")
R01 = ["fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"]
R02 = ["fra1-r02-cmp1", "fra1-r02-cmp2", "fra1-r02-sto1"]


@pytest.fixture(scope="module")
def catalog(vault: Vault) -> Catalog:
    return Catalog(AwsSettings.from_secret(vault.read(AWS_PATH)))


@pytest.fixture(scope="module", autouse=True)
def site_up(lab: Lab, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> None:
    lab.reset()
    for site, rack in (("fra1", "fra1-r01"), ("fra1", "fra1-r02"), ("ams1", "ams1-r01")):
        assert rack_bringup(site=site, rack=rack, dry_run=False).failed == 0
    assert not any(r.failed for r in fabric_apply(site="core", dry_run=False))
    images = tmp_path_factory.mktemp("images")
    for version, broken in (("v1", False), ("v2", False), ("bad", True), ("corrupt", False)):
        catalog.publish(version, build(version, images / f"{version}.tar.gz", broken=broken), amis=False)


def on_host(lab: Lab, host: str, script: str) -> str:
    return procs.run([*lab.fabric.nsenter(host), "python3", "-c", script], f"check on {host}").stdout


def running(lab: Lab, host: str) -> dict[str, object] | None:
    """What the host's service answers on /health, and the image state file: None without an image."""
    out = on_host(
        lab,
        host,
        "import json, pathlib, urllib.request\n"
        "state = pathlib.Path('/etc/atlas/image.json')\n"
        "if not state.exists(): print('null'); raise SystemExit\n"
        "health = json.load(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=5))\n"
        "print(json.dumps({'state': json.loads(state.read_text()), 'health': health}))\n",
    )
    return json.loads(out)  # type: ignore[no-any-return]


def serving_after_boot(lab: Lab, host: str) -> dict[str, object] | None:
    """What the host serves once its services are up again after a boot (None: not within a minute)."""

    def read() -> dict[str, object] | None:
        try:
            return running(lab, host)
        except procs.StartError:  # its service is not answering yet
            return None

    return poll_until(read, lambda r: r is not None, timeout=60)


def versions(nb: pynetbox.api, hosts: list[str]) -> dict[str, str | None]:
    return {h: nb.dcim.devices.get(name=h).custom_fields.get("image_version") for h in hosts}


def test_a_corrupt_artifact_is_refused_before_any_host_is_drained(
    lab: Lab, catalog: Catalog, nb: pynetbox.api
) -> None:
    key = catalog.manifest("corrupt").artifact_key  # type: ignore[union-attr]
    catalog._client("s3").put_object(Bucket=catalog.settings.bucket, Key=key, Body=b"not what was published")
    with pytest.raises(RolloutRefused, match="image corrupt is corrupt: its artifact has sha256"):
        image_rollout(version="corrupt", site="fra1", rack="fra1-r01", dry_run=False)
    assert all(not lab.fabric.machine(h).upper.joinpath("etc/atlas/drained").exists() for h in R01)
    assert all(running(lab, h) is None for h in R01)
    assert set(versions(nb, R01).values()) == {None}


def test_bad_parameters_are_refused_with_every_problem_named() -> None:
    with pytest.raises(RolloutRefused) as info:
        image_rollout(version="v1", site="fra1", rack="fra1-r99", role="storage", dry_run=False)
    assert "rack 'fra1-r99' is not in site fra1" in str(info.value)
    with pytest.raises(RolloutRefused, match="image never is not in the catalog"):
        image_rollout(version="never", site="fra1", dry_run=True)
    with pytest.raises(RolloutRefused, match="site 'nowhere' is not in NetBox"):
        image_rollout(version="v1", site="nowhere", dry_run=True)


def test_a_dry_run_shows_the_waves_and_changes_nothing(lab: Lab) -> None:
    report = image_rollout(version="v1", site="fra1", canary=1, wave_size=2, dry_run=True)
    assert [len(w) for w in report.waves] == [1, 2, 2, 1]
    for wave in report.waves[1:3]:
        assert len({h.rsplit("-", 1)[0] for h in wave}) == 2  # one host of each rack
    assert report.changed == [] and all(o.result == "planned" for o in report.hosts.values())
    assert all(running(lab, h) is None for h in R01 + R02)


def test_a_rack_rolls_out_host_by_host_and_netbox_follows(lab: Lab, nb: pynetbox.api) -> None:
    report = image_rollout(version="v1", site="fra1", rack="fra1-r01", canary=1, wave_size=2, dry_run=False)
    assert report.changed == R01 and report.stopped is None
    assert versions(nb, R01) == dict.fromkeys(R01, "v1")
    for h in R01:
        now = running(lab, h)
        assert now is not None
        assert now["health"] == {"host": h, "version": "v1", "drained": False}
        assert now["state"] == {"version": "v1", "slot": "a", "previous": None}
        device = nb.dcim.devices.get(name=h)
        journal = nb.extras.journal_entries.filter(
            assigned_object_type="dcim.device", assigned_object_id=device.id
        )
        assert any("image-rollout" in e.comments and "none -> v1" in e.comments for e in journal)
    assert all(running(lab, h) is None for h in R02)  # outside the scope
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image-rollout-fra1-devices"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifacts and "fra1-r01-cmp1" in str(artifacts[0].data)


def test_a_host_rebooted_after_the_rollout_boots_the_new_version_and_serves_it(lab: Lab) -> None:
    host = R01[0]
    lab.reboot(host)
    now = serving_after_boot(lab, host)
    assert now is not None, f"{host} serves nothing a minute after its reboot"
    assert now["health"] == {"host": host, "version": "v1", "drained": False}
    assert now["state"] == {"version": "v1", "slot": "a", "previous": None}


def test_the_second_run_changes_nothing() -> None:
    report = image_rollout(version="v1", site="fra1", rack="fra1-r01", dry_run=False)
    assert report.waves == [] and report.changed == []
    assert {o.result for o in report.hosts.values()} == {"already on version"}


def test_a_canary_that_fails_its_health_check_goes_back_and_nothing_else_is_touched(
    lab: Lab, nb: pynetbox.api
) -> None:
    before = {h: running(lab, h) for h in R01}
    # the unit's own last words, from its journal, name why the canary failed
    with pytest.raises(RolloutStopped, match=rf"canary failed: {R01[0]}: .*cannot start: bad release"):
        image_rollout(version="bad", site="fra1", rack="fra1-r01", canary=1, failure_budget=5, dry_run=False)
    assert versions(nb, R01) == dict.fromkeys(R01, "v1")
    canary = R01[0]
    after = {h: running(lab, h) for h in R01}
    assert after[canary]["health"] == {"host": canary, "version": "v1", "drained": False}  # type: ignore[index]
    assert after[canary]["state"]["rolled_back_from"] == "bad"  # type: ignore[index]
    assert {h: after[h] for h in R01[1:]} == {h: before[h] for h in R01[1:]}
    device = nb.dcim.devices.get(name=canary)
    journal = nb.extras.journal_entries.filter(
        assigned_object_type="dcim.device", assigned_object_id=device.id
    )
    assert any("bad failed" in e.comments and "rolled back" in e.comments for e in journal)


def test_the_rolled_back_canary_boots_the_old_version_after_a_reboot(lab: Lab) -> None:
    canary = R01[0]
    lab.reboot(canary)
    now = serving_after_boot(lab, canary)
    assert now is not None, f"{canary} serves nothing a minute after its reboot"
    assert now["health"] == {"host": canary, "version": "v1", "drained": False}
    assert now["state"]["rolled_back_from"] == "bad"  # type: ignore[index]


def test_a_failed_first_image_is_removed_again(lab: Lab, nb: pynetbox.api) -> None:
    with pytest.raises(RolloutStopped, match="canary failed"):
        image_rollout(version="bad", site="fra1", rack="fra1-r02", canary=1, dry_run=False)
    assert all(running(lab, h) is None for h in R02)
    assert set(versions(nb, R02).values()) == {None}


def test_a_site_rolls_out_in_waves_across_racks_with_an_approval_between_them(
    lab: Lab, nb: pynetbox.api
) -> None:
    outcome = run_answering(
        lambda: image_rollout(
            version="v2", site="fra1", canary=1, wave_size=3, pause="approval", dry_run=False
        ),
        {"approve": True, "approver": "on-call", "comment": "looks fine"},
    )
    assert outcome.error is None, outcome.error
    assert [len(w) for w in outcome.result.waves] == [1, 3, 2]
    assert outcome.pauses == 2
    assert outcome.result.approvals[0].endswith("approved by on-call: looks fine")
    assert versions(nb, R01 + R02) == dict.fromkeys(R01 + R02, "v2")
    r01_state = running(lab, R01[1])
    assert r01_state is not None and r01_state["state"] == {
        "version": "v2",
        "slot": "b",
        "previous": {"version": "v1", "slot": "a"},
    }
    assert all(running(lab, h)["health"]["version"] == "v2" for h in R02)  # type: ignore[index]


def test_an_approver_who_says_no_stops_the_rollout(nb: pynetbox.api) -> None:
    outcome = run_answering(
        lambda: image_rollout(
            version="v1", site="fra1", rack="fra1-r02", canary=1, pause="approval", dry_run=False
        ),
        {"approve": False, "approver": "on-call", "comment": "not tonight"},
    )
    assert isinstance(outcome.error, RolloutStopped)
    assert "refused by on-call" in str(outcome.error) and "not tonight" in str(outcome.error)
    on_v1 = [h for h, v in versions(nb, R02).items() if v == "v1"]
    assert len(on_v1) == 1  # the canary only


def test_a_wave_waits_while_another_run_changes_its_rack(lab: Lab, nb: pynetbox.api) -> None:
    behind = [h for h, v in versions(nb, R02).items() if v != "v2"]  # the refused rollout's canary
    assert behind
    held_back(
        "from flows.image_rollout import image_rollout; "
        "image_rollout(version='v2', site='fra1', rack='fra1-r02', dry_run=False)",
        rack_limit_name("fra1", "fra1-r02"),
        lambda: (versions(nb, R02), [running(lab, h) for h in behind]),
    )
    assert versions(nb, R02) == dict.fromkeys(R02, "v2")


def test_the_service_is_answered_from_both_sites_and_a_drained_server_gets_no_requests(
    lab: Lab, vault: Vault, sites: list[Site]
) -> None:
    image_rollout(version="v2", site="ams1", rack="ams1-r01", wave_size=3, dry_run=False)
    devices = {d.name: d for s in sites for d in s.devices}
    client, site_of = devices["client1"], {name: d.site for name, d in devices.items()}
    service = devices["fra1-r01-cmp1"].anycast[0].ip
    announcing = {name for name, d in devices.items() if d.anycast}
    assert announcing == {
        f"{r}-cmp{n}" for r in ("fra1-r01", "fra1-r02", "ams1-r01", "ams1-r02") for n in (1, 2)
    }
    cred = vault.credential("core", "client")
    before = probe(client, cred, service, count=40)
    assert not before.errors and set(before.by_site(site_of)) == {"fra1", "ams1"}
    assert set(before.by_host) <= announcing - {"ams1-r02-cmp1", "ams1-r02-cmp2"}  # planned rack: no image
    services = SystemdServices(lambda d: vault.credential(d.site, d.role.value))
    fra1 = [devices[h] for h in announcing if h.startswith("fra1")]
    for host in fra1:
        services.drain(host)
    try:
        drained = probe(client, cred, service, count=20)
        assert not drained.errors and set(drained.by_site(site_of)) == {"ams1"}
    finally:
        for host in fra1:
            services.undrain(host)
    after = probe(client, cred, service, count=40)
    assert not after.errors and set(after.by_site(site_of)) == {"fra1", "ams1"}


def test_a_rollout_killed_mid_wave_is_finished_by_the_next_and_no_host_stays_drained(
    lab: Lab, nb: pynetbox.api
) -> None:
    def drained(host: str) -> bool:
        return on_host(lab, host, f"import os; print(os.path.exists({MARK!r}))").strip() == "True"

    kill_when(
        "from flows.image_rollout import image_rollout; "
        "image_rollout(version='v1', site='fra1', rack='fra1-r01', canary=1, wave_size=3, dry_run=False)",
        lambda: any(drained(h) for h in R01),
    )
    assert any(drained(h) for h in R01)  # what the killed run left: a host out of service
    report = image_rollout(version="v1", site="fra1", rack="fra1-r01", canary=1, wave_size=3, dry_run=False)
    assert report.stopped is None
    assert versions(nb, R01) == dict.fromkeys(R01, "v1")
    for h in R01:
        now = running(lab, h)
        assert now is not None and now["health"] == {"host": h, "version": "v1", "drained": False}
        assert not drained(h)
