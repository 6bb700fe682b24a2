import pytest

from atlas.core.safety import name_problem, text_problem


@pytest.mark.parametrize("name", ["fra1-r01-leaf1", "swp1", "Ethernet1/1", "eth0.100"])
def test_plain_names_pass(name: str) -> None:
    assert name_problem("device", name) is None


@pytest.mark.parametrize("name", ["", "leaf 1", "leaf1\nreload", "leaf;1", "-leaf", "a" * 65, "lé"])
def test_names_that_a_cli_could_parse_are_refused(name: str) -> None:
    assert name_problem("device", name) is not None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("uplink\nwrite erase", "control characters"),
        ("uplink\r", "control characters"),
        ("uplink \x1b[2J", "control characters"),
        ("uplink; reload", "CLI separators"),
        ("$(reboot)", "CLI separators"),
        ("x" * 201, "longer than"),
    ],
)
def test_descriptions_with_control_characters_or_separators_are_refused(text: str, why: str) -> None:
    problem = text_problem("description", text)
    assert problem is not None and why in problem


def test_an_ordinary_description_passes() -> None:
    assert text_problem("description", "to fra1-spine1 swp3 (ticket DC-1234)") is None
