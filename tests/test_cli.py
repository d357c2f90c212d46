import subprocess
import sys

import musetag
from musetag.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert musetag.__version__ in capsys.readouterr().out


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "musetag", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "COMMAND" in out.stdout
