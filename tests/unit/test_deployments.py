"""prefect.yaml against the flows: every flow deployed, every form field explained, no secret in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from atlas.prefect.serve import PROJECT, deployments_from

PREFECT_YAML = PROJECT / "prefect.yaml"


@pytest.fixture(scope="module")
def deployments() -> list[Any]:
    return deployments_from(PREFECT_YAML)


def test_every_flow_has_a_deployment(deployments: list[Any]) -> None:
    declared = {
        f"flows.{path.stem}.{name}"
        for path in sorted((PROJECT / "flows").glob("*.py"))
        for name in re.findall(r"@flow\(name=\"[^\"]+\"\)\n@form\ndef (\w+)\(", path.read_text())
    }
    deployed = {d["entrypoint"] for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    assert len(declared) == 9
    assert declared == deployed


def test_every_form_field_is_explained(deployments: list[Any]) -> None:
    unexplained = [
        f"{d.name}.{name}"
        for d in deployments
        for name, prop in d._parameter_openapi_schema.properties.items()
        if len(prop.get("description", "")) < 8
    ]
    assert unexplained == []
    assert all(d.description and d.tags for d in deployments)


def test_changes_default_to_a_dry_run(deployments: list[Any]) -> None:
    """A form submitted as it opens changes nothing; the sweep only reads unless areas to remediate
    are chosen."""
    for d in deployments:
        schema = d._parameter_openapi_schema.properties
        default = d.parameters.get("dry_run", schema["dry_run"].get("default"))
        if d.name == "config-sweep":
            assert schema["remediate_areas"]["default"] == [], d.name
        else:
            assert default is True, d.name


def test_prefect_yaml_holds_no_address_or_secret() -> None:
    text = Path(PREFECT_YAML).read_text().lower()
    for word in ("token", "password", "secret", "http://", "https://", "127.0.0.1"):
        assert word not in text, word
