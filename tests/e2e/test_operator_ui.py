"""The Prefect UI in a real browser (Debian's chromium, driven by Playwright), used as a tech and
on-call use it: rack-bringup started from its form, watched to the end, its report opened; evacuate
started from its form and approved in the Resume dialog. The runs execute in the lab's `atlas serve`,
exactly as a deployment does. Screenshots land in test-artifacts/ui/."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynetbox
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from atlas.core.model import DeviceStatus
from atlas.lab.lab import Lab
from atlas.prefect.serve import PROJECT
from atlas.secrets import Vault
from atlas.sot.read import read_site
from tests.e2e.setups import serving

pytestmark = pytest.mark.usefixtures("flow_env")
CHROMIUM = Path("/usr/bin/chromium")
# what works as root on these machines; Playwright adds --headless and a fresh profile per context
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = PROJECT / "test-artifacts" / "ui"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module", autouse=True)
def both_sites_serving(vault: Vault, nb: pynetbox.api, tmp_path_factory: pytest.TempPathFactory) -> None:
    serving(vault, nb, tmp_path_factory.mktemp("img"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "chromium is missing: scripts/bootstrap.sh installs it"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=ui_url(lab))
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    page.screenshot(path=SHOTS / f"{request.node.name}-last.png", full_page=True)  # kept on failure too
    context.close()


def ui_url(lab: Lab) -> str:
    return lab.cfg.prefect_url.removesuffix("/api")


def api(lab: Lab, path: str) -> Any:
    with urllib.request.urlopen(f"{lab.cfg.prefect_url}{path}", timeout=10) as response:
        return json.load(response)


def wait_for_state(lab: Lab, run_id: str, wanted: set[str], timeout: float) -> dict[str, Any]:
    """The run's state once it is one of `wanted` (or final); the UI is then asserted on."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = api(lab, f"/flow_runs/{run_id}")["state"]
        if state["type"] in wanted | FINAL or time.monotonic() > deadline:
            return state
        time.sleep(2)


def start_from_form(page: Page, lab: Lab, deployment: str, fields: dict[str, str]) -> str:
    """Opens the deployment's run form, fills it in, turns the dry run off, submits, follows the
    link to the new run; its id."""
    found = api(lab, f"/deployments/name/{deployment}/{deployment}")
    page.goto(f"/v2/deployments/deployment/{found['id']}/run")
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    dry_run = page.get_by_label("dry_run (Optional)")
    expect(dry_run).to_have_attribute("aria-checked", "true")  # a form's default never changes anything
    dry_run.click()
    expect(dry_run).to_have_attribute("aria-checked", "false")
    page.screenshot(path=SHOTS / f"{deployment}-form.png", full_page=True)
    page.get_by_role("button", name="Submit").click()
    page.get_by_role("link", name="View run").or_(page.get_by_role("button", name="View run")).first.click()
    page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}.*"))
    return page.url.split("/flow-run/")[1][:36]


def shows_state(page: Page, state: str) -> None:
    page.reload()
    expect(page.get_by_text(state, exact=True).filter(visible=True).first).to_be_visible()


def test_a_tech_brings_a_rack_up_from_the_form_and_reads_the_report(
    page: Page, lab: Lab, nb: pynetbox.api
) -> None:
    run_id = start_from_form(page, lab, "rack-bringup", {"site": "fra1", "rack": "fra1-r02"})
    state = wait_for_state(lab, run_id, set(), timeout=600)
    assert state["type"] == "COMPLETED", state["message"]
    shows_state(page, "Completed")
    page.get_by_role("tab", name="Artifacts").click()
    expect(page.get_by_text("rack-bringup fra1/fra1-r02: done")).to_be_visible()  # the progress bar's end
    page.screenshot(path=SHOTS / "rack-bringup-artifacts.png", full_page=True)
    page.get_by_text("rack-bringup-fra1-fra1-r02", exact=True).click()
    expect(page.get_by_text("Rack bring-up fra1/fra1-r02").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"devices changed: \d+"))).to_be_visible()
    page.screenshot(path=SHOTS / "rack-bringup-report.png", full_page=True)
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "active"


def test_on_call_evacuates_a_rack_approving_in_the_resume_dialog(
    page: Page, lab: Lab, nb: pynetbox.api
) -> None:
    run_id = start_from_form(
        page,
        lab,
        "evacuate",
        {
            "site": "fra1",
            "reason": "PDU swap in the rack",
            "ticket": "CHG-8080",
            "rack (Optional)": "fra1-r01",
        },
    )
    state = wait_for_state(lab, run_id, {"PAUSED"}, timeout=300)
    assert state["type"] == "PAUSED", state["message"]
    shows_state(page, "Paused")
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("fra1-r01-cmp1").first).to_be_visible()  # the plan is in the dialog
    dialog.get_by_label("Approve (Optional)").click()
    dialog.get_by_label("Approver", exact=True).fill("ui-on-call")
    dialog.get_by_label("Comment (Optional)").fill("PDU team on site")
    page.screenshot(path=SHOTS / "evacuate-approval.png", full_page=True)
    dialog.get_by_role("button", name="Resume").click()
    state = wait_for_state(lab, run_id, set(), timeout=600)
    assert state["type"] == "COMPLETED", state["message"]
    shows_state(page, "Completed")
    page.get_by_role("tab", name="Artifacts").click()
    expect(page.get_by_text("evacuate rack fra1-r01", exact=True)).to_be_visible()
    page.screenshot(path=SHOTS / "evacuate-artifacts.png", full_page=True)
    servers = [d for d in read_site(nb, "fra1").devices if d.rack == "fra1-r01" and d.role.is_server]
    assert servers and all(d.status == DeviceStatus.OFFLINE for d in servers)
    journal = [e.comments for e in nb.extras.journal_entries.filter(assigned_object_type="dcim.rack")]
    assert any("approved by ui-on-call: PDU team on site" in c for c in journal)
