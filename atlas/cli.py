"""The `atlas` command. `atlas lab ...` is the lab's (atlas/lab/cli.py), imported only when one of its
commands runs, and `--lab` imports it only for the lab named: no other command imports the lab."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from typer.core import TyperGroup

from atlas.images.catalog import AwsSettings, Catalog, ImageError, Manifest
from atlas.secrets import AWS_PATH, SecretError, Vault, VaultSettings
from atlas.sot.topology import TopologyError, load_topology

# the lab's defaults (atlas.lab.config), here without importing the lab
LAB_ROOT = Path(os.environ.get("ATLAS_LAB_ROOT", "/srv/atlas-lab"))
TOPOLOGY = Path(__file__).resolve().parents[1] / "inventory" / "lab"


class LabCommands(TyperGroup):
    """`atlas lab`: its commands come from atlas.lab.cli when one of them is asked for."""

    def _load(self) -> None:
        if not self.commands:
            from atlas.lab.cli import lab_app

            self.commands.update(typer.main.get_group(lab_app).commands)

    # ctx and the command are typer's own click types, which it does not export
    def list_commands(self, ctx: Any) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        self._load()
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    help="Atlas: datacenter automation with NetBox as the source of truth.", no_args_is_help=True
)
lab_app = typer.Typer(
    cls=LabCommands,
    help="The virtual datacenter: NetBox, FRR switches, servers, OpenBao, moto, Prefect.",
    no_args_is_help=True,
)
topology_app = typer.Typer(help="Topology files: check them, import them into NetBox.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(topology_app, name="topology")
run_app = typer.Typer(help="Run a flow from a shell, with progress, as the UI would.", no_args_is_help=True)
app.add_typer(run_app, name="run")
image_app = typer.Typer(
    help="The image catalog: artifacts in S3 with sha256 manifests, AMIs in EC2.", no_args_is_help=True
)
app.add_typer(image_app, name="image")
provisioning_app = typer.Typer(
    help="The provisioning service: DHCP and images for servers booting from the network.",
    no_args_is_help=True,
)
app.add_typer(provisioning_app, name="provisioning")
console = Console()
err = Console(stderr=True)

Root = Annotated[Path, typer.Option("--root", envvar="ATLAS_LAB_ROOT", help="Directory holding labs")]


def _lab_env(name: str, root: Path) -> dict[str, str]:
    """The environment of the lab `name` (Vault, Prefect, moto), for a command given `--lab`."""
    from atlas.lab.cli import lab_env

    return lab_env(name, root)


@app.command("serve")
def serve_command(
    paused_schedules: Annotated[
        bool, typer.Option("--paused-schedules", help="Register schedules paused (e.g. a test lab)")
    ] = False,
) -> None:
    """Serve the deployments of prefect.yaml (rack-bringup, config-sweep, ...) until stopped."""
    from atlas.prefect.serve import serve_all

    serve_all(paused_schedules=paused_schedules)


@run_app.command("bringup")
def run_bringup(
    site: Annotated[str, typer.Option(help="NetBox site")],
    rack: Annotated[str, typer.Option(help="NetBox rack")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing")
    ] = False,
    reimage: Annotated[
        bool,
        typer.Option("--reimage", help="Install the OS image NetBox names over another (erases those disks)"),
    ] = False,
    lab: Annotated[str | None, typer.Option(help="Take Vault and Prefect from this lab")] = None,
    root: Root = LAB_ROOT,
) -> None:
    """Bring a rack up from a shell: the same flow as the rack-bringup deployment."""
    import logging

    if lab is not None:
        os.environ.update(_lab_env(lab, root))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.rack_bringup import rack_bringup

    class StepDisplay(logging.Handler):
        def __init__(self, status: Status) -> None:
            super().__init__()
            self.status = status

        def emit(self, record: logging.LogRecord) -> None:
            task = getattr(record, "task_run_name", None)
            if task:
                self.status.update(f"[bold]{task.rsplit('-', 1)[0]}[/bold]: {record.getMessage()[:100]}")

    api = os.environ.get("PREFECT_API_URL")
    with temporary_settings({PREFECT_API_URL: api} if api else {}), console.status("starting") as status:
        handler = StepDisplay(status)
        logging.getLogger("prefect.task_runs").addHandler(handler)
        try:
            report = rack_bringup(site=site, rack=rack, dry_run=dry_run, reimage=reimage)
        except Exception as e:
            err.print(f"[red]rack-bringup {site}/{rack} failed:[/red] {e}")
            raise typer.Exit(1) from None
        finally:
            logging.getLogger("prefect.task_runs").removeHandler(handler)
    table = Table(title=f"rack-bringup {site}/{rack}{' (dry run)' if dry_run else ''}")
    for column in ("device", "role", "result", "changes", "detail"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*(row[c] for c in ("device", "role", "result", "changes", "detail")))
    console.print(table)
    verb = "would change" if dry_run else "changed"
    console.print(f"{report.changed} device(s) {verb}, {report.failed} failed")
    for change in report.netbox_changes:
        console.print(f"NetBox: {change}")


LabOption = Annotated[str | None, typer.Option(help="Take Vault (and so AWS) from this lab")]


def _catalog(lab: str | None, root: Path) -> Catalog:
    """The catalog where Vault says (secret atlas/aws); Vault from the environment or the lab."""
    env = _lab_env(lab, root) if lab is not None else {}
    try:
        settings = (
            VaultSettings(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
            if env
            else VaultSettings.from_env()
        )
        return Catalog(AwsSettings.from_secret(Vault(settings).read(AWS_PATH)))
    except (SecretError, ImageError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


@provisioning_app.command("serve")
def provisioning_serve(
    interface: Annotated[str, typer.Option(help="The provisioning network's interface (DHCP answers there)")],
    subnet: Annotated[str, typer.Option(help="The provisioning network, e.g. 10.0.0.0/24")],
    listen: Annotated[str, typer.Option(help="ADDRESS:PORT servers fetch images from")],
    state: Annotated[
        Path, typer.Option(help="Directory for Kea's configuration, leases and the reservations")
    ],
) -> None:
    """Serve DHCP reservations and the image catalog to servers booting from the network, until stopped."""
    from ipaddress import IPv4Network

    from atlas.provisioning.service import serve

    try:
        network = IPv4Network(subnet)
        catalog = Catalog(AwsSettings.from_secret(Vault(VaultSettings.from_env()).read(AWS_PATH)))
    except (ValueError, SecretError, ImageError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    serve(listen, interface, network, state, catalog)


def _manifest_table(manifests: list[Manifest]) -> Table:
    table = Table()
    for column in ("version", "sha256", "size", "published", "AMIs"):
        table.add_column(column)
    for m in manifests:
        amis = ", ".join(f"{region}: {ami}" for region, ami in sorted(m.amis.items()))
        table.add_row(m.version, m.sha256[:16] + "…", f"{m.size:,} B", m.published_at[:19], amis or "none")
    return table


@image_app.command("publish")
def image_publish(
    version: Annotated[str, typer.Argument(help="Version name, e.g. 2026.11.1")],
    artifact: Annotated[
        Path, typer.Argument(help="The image artifact (.tar.gz)", exists=True, dir_okay=False)
    ],
    amis: Annotated[bool, typer.Option(help="Register the AMI and copy it to every region")] = True,
    lab: LabOption = None,
    root: Root = LAB_ROOT,
) -> None:
    """Publish a version: same version and content again is a no-op; other content is refused."""
    catalog = _catalog(lab, root)
    try:
        with console.status(f"publishing {version}"):
            published = catalog.publish(version, artifact, amis=amis)
    except ImageError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    for change in published.changes:
        console.print(change)
    if not published.changes:
        console.print(f"{version} is already published with this content: nothing changed")
    console.print(_manifest_table([published.manifest]))


@image_app.command("list")
def image_list(lab: LabOption = None, root: Root = LAB_ROOT) -> None:
    """Every published version, oldest first."""
    console.print(_manifest_table(_catalog(lab, root).versions()))


@image_app.command("show")
def image_show(
    version: Annotated[str, typer.Argument()], lab: LabOption = None, root: Root = LAB_ROOT
) -> None:
    """One version's manifest, as JSON."""
    manifest = _catalog(lab, root).manifest(version)
    if manifest is None:
        err.print(f"[red]image {version} is not in the catalog[/red]")
        raise typer.Exit(1)
    print(manifest.model_dump_json(indent=2))


@image_app.command("build-lab")
def image_build_lab(
    version: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Argument(help="Where to write the artifact")],
    broken: Annotated[bool, typer.Option(help="A release whose service never starts (drills)")] = False,
) -> None:
    """Build an image of the lab's workload, for drills and demos."""
    from atlas.lab.images import build  # the lab's own workload: a lab command

    console.print(f"wrote {build(version, out, broken=broken)}")


@topology_app.command("check")
def topology_check(directory: Annotated[Path, typer.Argument()] = TOPOLOGY) -> None:
    """Check topology files and name every problem; nothing is written anywhere."""
    try:
        topo = load_topology(directory)
    except TopologyError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"ok: {len(topo.sites)} sites, {len(topo.all_devices())} devices, {len(topo.all_cables())} cables"
    )


if __name__ == "__main__":
    app()
