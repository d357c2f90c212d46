import subprocess
import sys
from pathlib import Path

import pytest

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


def test_port_numbers_are_checked_before_anything_loads():
    """`serve --port 99999` loaded the model, then died in bind() with an OverflowError traceback."""
    import argparse

    from musetag.commands import port_number

    assert port_number("0") == 0 and port_number("8000") == 8000
    for bad in ("99999", "-1", "http"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_number(bad)
    from musetag.cli import build_parser

    for command in (["serve", "m"], ["label", "folder", "--tags", "a,b"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*command, "--port", "99999"])
        assert exc.value.code == 2



def test_help_texts_say_each_default_once():
    """`prepare --help` printed "(default: only on a terminal) (default: None)"."""
    import argparse
    import re

    from musetag.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert not re.search(r"\(default[^)]*\) \(default", text), name


def test_an_unknown_option_shows_the_commands_usage(capsys):
    """`compare A B -g G --bootstrap 0` (the flag is --resamples) printed musetag's top-level usage."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", "a.npy", "b.npy", "-g", "g.npy", "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("usage: musetag compare") and "--resamples" in err
    assert "musetag compare: error: unrecognized arguments: --bootstrap" in err


def test_python_api_misuse_gets_errors_that_say_the_fix():
    """From the README's Python API: typos and wrong types gave bare AttributeError/TypeError, or read
    sets="epochs=1" one character at a time."""
    import musetag
    from musetag.errors import ConfigError, ModelError

    with pytest.raises(ModelError, match="did you mean the pretrained mtg-jamendo-baseline"):
        musetag.Tagger.from_package("mtg-jamendo-baselin")
    with pytest.raises(ConfigError, match=r"Tagger\(\) takes a loaded ModelPackage.*Tagger.from_package"):
        musetag.Tagger("mtg-jamendo-baseline")
    with pytest.raises(ConfigError, match="a model is a pretrained name, a package folder or an archive path"):
        musetag.Tagger.from_package(None)
    for sets, hint in (("epochs=1", "got str"), ({"epochs": 1}, r"\(here: \['epochs=1'\]\)")):
        with pytest.raises(ConfigError, match=f"sets must be a list of 'KEY=VALUE' strings.*{hint}"):
            musetag.train("demo", data="x.toml", out="unused", sets=sets)


def test_an_interrupted_training_run_says_how_to_continue(tmp_path, monkeypatch, capsys):
    import musetag.commands.train as train_command

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "run", interrupted)
    assert main(["train", "demo", "--data", "x.toml", "--out", str(run)]) == 130
    assert f"interrupted; continue it with: musetag train --resume {run}" in capsys.readouterr().err
    assert main(["train", "demo", "--data", "x.toml", "--out", str(tmp_path / "fresh")]) == 130
    assert capsys.readouterr().err.strip() == "musetag train: interrupted"  # nothing saved yet: nothing to resume
    # under torchrun every process was interrupted: rank 0 alone says so, with the torchrun command
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank, said in (("0", f"continue it with: torchrun --nproc_per_node=2 -m musetag train --resume {run}"),
                       ("1", None)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "demo", "--data", "x.toml", "--out", str(run)]) == 130
        err = capsys.readouterr().err
        assert (said in err) if said else err == "", err


def test_a_reader_that_goes_away_is_not_an_error():
    """`musetag train --list | head -1` printed "error: Broken pipe; check the path and the disk" and exited 2:
    BrokenPipeError is an OSError, and the OSError handler came first."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(musetag.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "musetag", "train", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err
