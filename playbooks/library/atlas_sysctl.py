#!/usr/bin/python3
"""Ansible module: kernel parameters, live and in a sysctl.d file that Atlas owns, in one module run.

ansible.posix.sysctl takes one run (and a `sysctl -p`) per parameter; the baseline sets all of its own
at once. The file holds exactly the given parameters, so it is written whole; live values are set
through /proc/sys only where they differ. Check mode reports what would change.
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: atlas_sysctl
short_description: Kernel parameters, live and persisted in one file, idempotently
options:
  values:
    description: parameter name (dotted, as sysctl names it) -> value
    type: dict
    required: true
  file:
    description: the sysctl.d file that holds exactly these parameters
    type: path
    required: true
"""

HEADER = "# Written by Atlas (playbooks/host-baseline.yml); changes here are undone on its next run.\n"


def file_content(values):
    return HEADER + "".join(f"{name} = {value}\n" for name, value in sorted(values.items()))


def proc_path(name):
    if not name or any(part in ("", ".", "..") for part in name.split(".")) or "/" in name:
        raise ValueError(f"{name!r} is not a kernel parameter name")
    return Path("/proc/sys", *name.split("."))


def live_value(path):
    """As sysctl prints it: fields of a multi-value parameter (tab-separated in /proc) by one space."""
    return " ".join(path.read_text().split())


def main():
    module = AnsibleModule(
        argument_spec={
            "values": {"type": "dict", "required": True},
            "file": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    values = {name: str(value) for name, value in module.params["values"].items()}
    try:
        live = {name: proc_path(name) for name in values}
    except ValueError as e:
        module.fail_json(msg=str(e))
    missing = sorted(name for name, path in live.items() if not path.exists())
    if missing:
        module.fail_json(msg="no such kernel parameter on this host: " + ", ".join(missing))
    values = {name: " ".join(value.split()) for name, value in values.items()}
    changes = [
        f"{name}: {live_value(path)} -> {values[name]}"
        for name, path in live.items()
        if live_value(path) != values[name]
    ]
    persisted = Path(module.params["file"])
    want = file_content(values)
    have = persisted.read_text() if persisted.exists() else ""
    if have != want:
        changes.append(f"{persisted} written")
    if changes and not module.check_mode:
        if have != want:
            persisted.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            persisted.write_text(want)
            persisted.chmod(0o644)
        for name, path in live.items():
            if live_value(path) != values[name]:
                path.write_text(values[name] + "\n")
    module.exit_json(changed=bool(changes), commands=changes)


if __name__ == "__main__":
    main()
