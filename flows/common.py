"""What every Atlas flow shares: its sources of truth, its form fields, its report."""

from __future__ import annotations

from typing import Annotated, Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from atlas.secrets import Vault, VaultSettings
from atlas.sot.client import connect

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SiteName = Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox site, e.g. fra1")]
DryRun = Annotated[bool, Field(description="Show what would change; change nothing")]
Names = list[Annotated[str, Field(pattern=NAME_PATTERN)]]  # NetBox names, each checked


def sources() -> tuple[Any, Vault]:
    """NetBox (its address and token from Vault) and Vault, from the worker's environment."""
    vault = Vault(VaultSettings.from_env())
    url, token = vault.netbox()
    return connect(url, token), vault


def run_name() -> str:
    return str(flow_run.get_name() or "manual")


def publish(key: str, title: str, lines: list[str], rows: list[dict[str, str]]) -> None:
    """A markdown summary and a per-device table, under keys that keep one history per target."""
    create_markdown_artifact(
        key=key.lower(),
        markdown=f"## {title}\n\n" + "".join(f"* {line}\n" for line in lines),
        description=title,
    )
    if rows:
        create_table_artifact(table=rows, key=f"{key}-devices".lower(), description=f"{title}: per device")


class Approval(RunInput):
    """The form a person answers in the UI's Resume dialog; each flow says what `approve` means."""

    approve: bool = Field(False, description="Tick to go on")
    approver: str = Field(..., min_length=2, max_length=64, description="Your name")
    comment: str = Field("", max_length=500, description="Anything the next on-call should know")
