"""The CLI's help is its first page of documentation: every command and option has help text."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from durableflow import __version__
from durableflow.cli import cli
from tests.cli.cli_helpers import subprocess_env


def walk(group: click.Group, prefix: str = "durableflow"):
    yield prefix, group
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from walk(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def missing_help(group: click.Group) -> list[str]:
    problems = []
    for path, command in walk(group):
        if not (command.help or command.short_help or "").strip():
            problems.append(f"{path}: command has no help")
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                problems.append(f"{path}: option {'/'.join(param.opts)} has no help")
    return problems


def test_every_command_and_option_has_help():
    assert missing_help(cli) == []


def test_the_help_check_catches_a_command_or_option_without_help():
    @click.group(help="a group")
    def group():
        pass

    @group.command()
    @click.option("--quiet", is_flag=True)
    def bare():
        pass

    assert missing_help(group) == ["durableflow bare: command has no help",
                                   "durableflow bare: option --quiet has no help"]


def test_the_commands_of_spec_section_7_that_exist_now():
    names = set(cli.list_commands(click.Context(cli)))
    assert {"validate", "graph", "run", "start", "worker", "runs", "status", "history",
            "workflows", "pause", "resume", "cancel", "recover", "doctor",
            "dead-letters"} <= names


@pytest.mark.parametrize("name", sorted(cli.list_commands(click.Context(cli))))
def test_each_command_help_exits_0(invoke, name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: durableflow {name}")


def test_version(invoke):
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_python_dash_m_durableflow_help():
    proc = subprocess.run([sys.executable, "-m", "durableflow", "--help"], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: durableflow")
    for name in ("validate", "run", "worker", "dead-letters"):
        assert name in proc.stdout
    assert proc.stderr == ""


def test_no_command_shows_usage(invoke):
    result = invoke()
    assert result.exit_code in (0, 2)
    assert "Usage: durableflow" in result.output


def test_unknown_command_is_a_usage_error(invoke):
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.stderr
