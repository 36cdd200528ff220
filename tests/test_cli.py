import subprocess
import sys

from nnunet_cdl.cli import COMMANDS, main


def test_unknown_command_exits_nonzero(capsys) -> None:
    assert main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    for name in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "nnunet_cdl.cli", name, "-h"], capture_output=True, text=True)
        assert result.returncode == 0, (name, result.stderr)
        assert "usage" in result.stdout.lower(), name
