"""The command line lists every command but imports only the one that runs."""
import subprocess
import sys
from pathlib import Path

import pytest

import cli

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name, (_, help_text) in cli.COMMANDS.items():
        assert name in out and help_text.split()[0] in out


def test_a_command_imports_only_its_own_module():
    code = ("import sys, cli; p = cli.build_parser('say'); "
            "a = p.parse_args(['say', 'hi', '--person', 'demo', '-o', 'x.mp4']); "
            "print(a._module.__name__, sorted(m for m in sys.modules if m.startswith('pipelines.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split(" ", 1)
    assert out[0] == "pipelines.say"
    assert "train_person" not in out[1] and "train_audio2expr" not in out[1]


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["bogus"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
