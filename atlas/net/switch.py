"""Bringing a switch to its intended configuration: read running, diff, push only the difference,
save, and read back to prove it converged."""

from __future__ import annotations

from atlas.core.model import Credential, Device
from atlas.core.run import Result
from atlas.net.config import diff
from atlas.net.sessions import DeviceUnreachable, show, switch_cli, switch_show

# vtysh answers a bad line with one of these; netmiko raises on them instead of pushing on.
CLI_ERRORS = r"% ?(Unknown command|Ambiguous command|Command incomplete|Invalid|Unknown|Can't|Cannot)"
STEP = "switch-config"
# Which FRR daemon takes each kind of line: with that daemon down, vtysh drops the lines and a push
# would leave the switch half-configured.
DAEMON_OF_LINE = {"router ospf": "ospfd", "ip ospf": "ospfd", "ip route": "staticd", "router bgp": "bgpd"}


def missing_daemons(intended: str, show_daemons: str) -> list[str]:
    """The daemons `intended` needs that FRR's `show daemons` does not list as running."""
    lines = [line.strip() for line in intended.splitlines()]
    needed = {"zebra"} | {d for start, d in DAEMON_OF_LINE.items() if any(x.startswith(start) for x in lines)}
    return sorted(needed - set(show_daemons.split()))


def apply_config(
    device: Device, cred: Credential, intended: str, dry_run: bool = False, running: str | None = None
) -> Result:
    """`running`: the running configuration if the caller has just read it."""
    try:
        # reading costs one exec channel; the interactive CLI session is opened only to change
        current = switch_show(device, cred, "show running-config") if running is None else running
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    before = diff(current, intended)
    if before.empty:
        return Result(target=device.name, step=STEP, detail="already as intended")
    try:
        daemons = switch_show(device, cred, "show daemons")
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    missing = missing_daemons(intended, daemons)
    if missing:
        return Result.failure(
            device.name,
            STEP,
            f"FRR's {', '.join(missing)} not running (running: {daemons.strip() or 'none'}); nothing "
            "pushed: restart FRR on the switch, then re-run",
        )

    def changed(detail: str, failed: bool = False) -> Result:
        return Result(
            target=device.name, step=STEP, changed=True, failed=failed, diff=before.summary, detail=detail
        )

    if dry_run:
        return changed(f"dry run: {len(before.summary)} change(s) not applied")
    try:
        with switch_cli(device, cred) as cli:
            try:
                cli.send_config_set(list(before.commands), error_pattern=CLI_ERRORS)
            except Exception as e:  # netmiko raises ConfigInvalidException and friends
                cli.exit_config_mode()
                return Result.failure(device.name, STEP, f"the switch refused the change: {e}")
            saved = cli.save_config()
            after = diff(show(cli, "show running-config"), intended)
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    if not after.empty:
        return changed(f"still differs after the push: {'; '.join(after.summary)}", failed=True)
    if "saved" not in saved and "[OK]" not in saved:
        return changed("configuration applied but not saved", failed=True)
    return changed(f"{len(before.summary)} change(s) applied and saved")
