"""The CLI explains itself: help on every command and option, choices listed and enforced."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from datasite.cli import app
from datasite.contract.lifecycle import State

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def _commands(group, prefix: str = "") -> list:  # type: ignore[no-untyped-def]
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        found.append((path, command))
        if hasattr(command, "commands"):
            found += _commands(command, path)
    return found


def test_every_command_and_option_has_help() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 20
    missing = []
    for path, command in commands:
        if not (command.help or "").strip():
            missing.append(path)
        for param in command.params:
            if param.name != "help" and not (getattr(param, "help", None) or "").strip():
                missing.append(f"{path} {param.name}")
    assert missing == []


def test_version() -> None:
    done = runner.invoke(app, ["--version"], env=ENV)
    assert done.exit_code == 0 and done.output.startswith("datasite ") and "0." in done.output


def test_state_lists_its_values_and_refuses_others() -> None:
    shown = runner.invoke(app, ["requests", "list", "--help"], env=ENV).output
    for state in State:
        assert state.value in shown
    args = ["--url", "http://127.0.0.1:9", "--login", "a@b.example", "--password", "x"]
    done = runner.invoke(app, ["requests", "list", *args, "--state", "approvd"], env=ENV)
    assert done.exit_code == 2 and "approvd" in done.output and "checked" in done.output


def test_role_lists_its_values_and_refuses_others() -> None:
    shown = runner.invoke(app, ["users", "create", "--help"], env=ENV).output
    assert "owner" in shown and "reviewer" in shown and "researcher" in shown
    args = ["--url", "http://127.0.0.1:9", "--login", "a@b.example", "--password", "x"]
    done = runner.invoke(
        app, ["users", "create", "x@y.example", "X", *args, "--role", "admin"], env=ENV
    )
    assert done.exit_code == 2 and "admin" in done.output and "reviewer" in done.output


def test_a_request_id_must_be_a_number_the_site_can_hold() -> None:
    args = ["--url", "http://127.0.0.1:9", "--login", "a@b.example", "--password", "x"]
    done = runner.invoke(app, ["requests", "show", "99999999999999999999999", *args], env=ENV)
    assert done.exit_code == 2 and "Traceback" not in done.output
