"""The command line's commands, one module per area; each registers its commands on the group (group.py)."""
