"""Bringing a switch to its intended configuration, whatever its platform: read running, diff, push
only the difference, save, and read back to prove it converged."""

from __future__ import annotations

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device
from atlas.core.run import Result
from atlas.net.config import diff
from atlas.net.platforms import platform_of
from atlas.net.sessions import DeviceUnreachable, show, switch_cli

STEP = "switch-config"


def apply_config(
    device: Device, cred: Credential, intended: str, dry_run: bool = False, running: str | None = None
) -> Result:
    """`running`: the running configuration if the caller has just read it."""
    try:
        platform = platform_of(device)
    except Refused as e:
        return Result.failure(device.name, STEP, "; ".join(e.problems))
    try:
        # reading costs one exec channel; the interactive CLI session is opened only to change
        current = platform.show(device, cred, platform.running_config_command) if running is None else running
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    before = diff(current, intended, platform)
    if before.empty:
        return Result(target=device.name, step=STEP, detail="already as intended")
    try:
        daemons = platform.show(device, cred, platform.daemons_command)
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    problem = platform.daemons_problem(intended, daemons)
    if problem is not None:
        return Result.failure(device.name, STEP, problem)

    def changed(detail: str, failed: bool = False) -> Result:
        return Result(
            target=device.name, step=STEP, changed=True, failed=failed, diff=before.summary, detail=detail
        )

    if dry_run:
        return changed(f"dry run: {len(before.summary)} change(s) not applied")
    try:
        with switch_cli(device, cred, platform.device_type) as cli:
            try:
                cli.send_config_set(list(before.commands), error_pattern=platform.cli_errors)
            except Exception as e:  # netmiko raises ConfigInvalidException and friends
                cli.exit_config_mode()
                return Result.failure(device.name, STEP, f"the switch refused the change: {e}")
            saved = cli.save_config()
            after = diff(show(cli, platform.running_config_command), intended, platform)
    except DeviceUnreachable as e:
        return Result.failure(device.name, STEP, str(e))
    if not after.empty:
        return changed(f"still differs after the push: {'; '.join(after.summary)}", failed=True)
    if not any(indicator in saved for indicator in platform.save_indicators):
        return changed("configuration applied but not saved", failed=True)
    return changed(f"{len(before.summary)} change(s) applied and saved")
