#!/bin/sh
# sshd ForceCommand of a lab switch: every login lands in this switch's vtysh, like a real switch CLI.
# usage (from sshd_config): switch-shell RUN_DIR FRR_CONFIG_DIR
# Allowed remote commands: none (interactive vtysh, as netmiko uses it), 'lldpcli [-f FMT] show ...',
# and "vtysh -c 'CMD' [-c 'CMD' ...]" (single-quoted commands without quotes inside, as a real
# switch's shell would run them). SSH_ORIGINAL_COMMAND is split without globbing and never evaluated.
set -f
run=$1
conf=$2
case "$SSH_ORIGINAL_COMMAND" in
  "")
    exec /usr/bin/vtysh --vty_socket "$run" --config_dir "$conf" ;;
  "lldpcli show "*|"lldpcli -f "*" show "*)
    set -- $SSH_ORIGINAL_COMMAND
    shift
    exec /usr/sbin/lldpcli "$@" ;;
  "vtysh -c '"*"'")
    rest=${SSH_ORIGINAL_COMMAND#vtysh}
    set --
    while [ -n "$rest" ]; do
      case "$rest" in
        " -c '"*"'"*) rest=${rest#" -c '"} ;;
        *) echo "only vtysh -c 'CMD' [-c 'CMD' ...], each single-quoted without quotes inside" >&2; exit 1 ;;
      esac
      cmd=${rest%%"'"*}
      rest=${rest#"$cmd'"}
      set -- "$@" -c "$cmd"
    done
    exec /usr/bin/vtysh --vty_socket "$run" --config_dir "$conf" "$@" ;;
  *)
    echo "this is a switch: only its CLI, 'lldpcli ... show ...' or \"vtysh -c 'CMD'\"" >&2
    exit 1 ;;
esac
