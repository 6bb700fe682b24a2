"""Host steps through Ansible (ansible-runner): inventories from NetBox models, per-host results."""
