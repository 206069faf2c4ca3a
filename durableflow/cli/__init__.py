"""The `durableflow` command line: parses, calls the Engine, formats, exits.

`main` is the console entry point; `cli` is the click group (for CliRunner and embedding).
"""

from durableflow.cli import (
    commands_admin, commands_definitions, commands_execute, commands_history, commands_runs,
    commands_store, commands_triggers, commands_ui)
from durableflow.cli.app import cli, main

for _module in (commands_definitions, commands_execute, commands_runs, commands_admin,
                commands_history, commands_triggers, commands_ui, commands_store):
    for _command in _module.COMMANDS:
        cli.add_command(_command)

__all__ = ["cli", "main"]
