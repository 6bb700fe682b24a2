#!/usr/bin/python3
"""Ansible module: programs known to supervisord and running, all of them in one module run.

community.general.supervisorctl handles one program and one state per run, and every step of it is a
supervisorctl process, so "two programs present and started" took four module runs and a dozen Python
starts on the host. This talks to supervisord over its own RPC interface, with the configuration and
socket supervisorctl would use: adds the programs it does not know and starts those not running, in
the order given, each RUNNING before the next, since the tasks after it talk to the daemons. Check mode
reports it.
"""

import time
import xmlrpc.client

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: atlas_supervised
short_description: supervisord programs added and started, idempotently, in one run
options:
  programs:
    description: program names, as in the [program:NAME] sections of supervisord's configuration
    type: list
    elements: str
    required: true
returns:
  all_started:
    description: >-
      every program was started by this run (none of them was running before), so they hold no
      state yet: FRR daemons started so have no configuration loaded
"""

ACTIVE = {"RUNNING", "STARTING", "BACKOFF"}
START_SECONDS = 20


def statuses(process_info):
    """supervisord's getAllProcessInfo() as program name -> state name."""
    return {p["name"]: p["statename"] for p in process_info}


def plan(programs, status):
    """(to add, to start): a program supervisord does not know is added, then started."""
    missing = [p for p in programs if p not in status]
    return missing, [p for p in programs if status.get(p) not in ACTIVE]


def supervisor_rpc(module):
    try:
        from supervisor.options import ClientOptions
    except ImportError:
        module.fail_json(msg="supervisor's Python package is not on this host (Debian: supervisor)")
    options = ClientOptions()
    options.realize(args=[])  # the configuration supervisorctl reads, with its server URL
    return options.getServerProxy().supervisor


def wait_running(module, rpc, program, changes):
    """Until supervisord calls the program RUNNING (up for its startsecs); started if it is stopped
    (a program added is started by supervisord unless its configuration says otherwise)."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        state = rpc.getProcessInfo(program)["statename"]
        if state == "RUNNING":
            return
        if state == "FATAL" or time.monotonic() > deadline:
            module.fail_json(msg=f"{program} is not running: {state}", commands=changes)
        if state in ("STOPPED", "EXITED"):
            rpc.startProcess(program, False)
        time.sleep(0.1)


def main():
    module = AnsibleModule(
        argument_spec={"programs": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    programs = module.params["programs"]
    rpc = supervisor_rpc(module)
    try:
        to_add, to_start = plan(programs, statuses(rpc.getAllProcessInfo()))
        changes = [f"{p}: added" for p in to_add] + [f"{p}: started" for p in to_start]
        if changes and not module.check_mode:
            if to_add:
                rpc.reloadConfig()
            # one after the other, as listed: a daemon may need the one before it (ospfd connects to
            # zebra's socket once at start and retries only seconds later)
            for program in programs:
                if program in to_add:
                    rpc.addProcessGroup(program)
                if program in to_start:
                    wait_running(module, rpc, program, changes)
    except (OSError, xmlrpc.client.Error) as e:
        module.fail_json(msg=f"supervisord: {e}")
    module.exit_json(changed=bool(changes), commands=changes, all_started=len(to_start) == len(programs))


if __name__ == "__main__":
    main()
