"""A killed run resumed with ``musetag train --resume`` ends exactly like an uninterrupted one
(CPU, fixed seed), with DataLoader workers, dropout, mixup, SpecAugment and SWA all active."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

SETS = ["epochs=4", "progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=2",
        "model.args.width=4", "model.args.dropout=0.3", "augment.mixup_alpha=0.4", "augment.specaugment=true",
        "swa.enabled=true", "swa.length=0.5", "final=swa", "final_choice=pinned", "data.num_workers=1", "schedule.name=cosine"]


def _cmd(*args):
    return [sys.executable, "-m", "musetag", "train", *args]


def _env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # same arithmetic in every process
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from musetag.data.synth import make_corpus

    root = tmp_path_factory.mktemp("resume")
    make_corpus(root / "corpus", n_clips=12, seconds=1.5, seed=5, clips_per_artist=1, split_fractions=(0.5, 0.25, 0.25))
    return root / "corpus" / "dataset.toml"


def _records(run):
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("time")
        out.append(record)
    return out


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(dataset, tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(_cmd("demo", "--data", str(dataset), "--out", str(reference), *sum((["--set", s] for s in SETS), [])),
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    # checkpoints after every step too, so the kill usually lands in the middle of an epoch
    args = _cmd("demo", "--data", str(dataset), "--out", str(killed),
                *sum((["--set", s] for s in SETS + ["checkpoint_every_steps=1"]), []))
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "summary.json").exists()
    assert (killed / "checkpoints" / "last.pt").exists()

    resumed = subprocess.run(_cmd("--resume", str(killed)), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert _records(killed) == _records(reference)
    a = json.loads((reference / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["final"] == b["final"] == "swa"
    assert a["validation"] == b["validation"] and a["test"] == b["test"]
    for split in ("validation", "test"):
        np.testing.assert_array_equal(np.load(reference / "predictions" / f"{split}.npy"),
                                      np.load(killed / "predictions" / f"{split}.npy"))


def test_resume_needs_a_run_folder(tmp_path):
    from musetag.errors import ConfigError
    from musetag.training import train

    with pytest.raises(ConfigError, match="config.toml"):
        train(resume=tmp_path)


def test_a_finished_run_says_so_and_a_longer_resume_is_recorded(dataset, tmp_path):
    """`--resume RUN --set epochs=N` trained on but left config.toml at the old length, and resuming a finished
    run finalised it again and reprinted its old timing."""
    from musetag.errors import ConfigError
    from musetag.training import train
    from musetag.training.recipes import load_toml_config

    run = tmp_path / "run"
    tiny = ["epochs=1", "progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=4",
            "model.args.width=2", "max_steps_per_epoch=1"]
    train("demo", data=dataset, out=run, sets=tiny)
    with pytest.raises(ConfigError, match=r"has finished its 1 epochs.*--resume .* --set epochs=2"):
        train(resume=run)
    train(resume=run, sets=["epochs=2"])
    assert load_toml_config(run / "config.toml").epochs == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="has finished its 2 epochs"):
        train(resume=run)
