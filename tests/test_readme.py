"""The README stays true: every setting, command and endpoint it must name."""

from pathlib import Path

from rlli.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [f"RLLI_{name.upper()}" for name in Settings.model_fields if f"`RLLI_{name.upper()}`" not in README]
    assert not missing, f"README lacks: {missing}"


def test_the_two_commands_and_every_cli_command_are_documented():
    from rlli.commands.main import build_parser

    assert "bash scripts/start.sh" in README and "bash scripts/test.sh" in README
    parser = build_parser()
    top = next(a for a in parser._actions if a.dest == "command")
    for name in top.choices:
        assert f"python -m rlli {name}" in README or f"rlli {name}" in README, name
