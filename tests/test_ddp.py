"""torchrun with 2 CPU processes (gloo) trains like one process with the same global batch."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

SETS = ["epochs=2", "progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=4",
        "model.args.width=4", "model.args.dropout=0.0", "optim.lr=0.003", "schedule.name=constant",
        "schedule.warmup_epochs=0", "swa.enabled=true", "swa.length=0.5",
        # the final weights compared are the last epoch's: after 2 epochs on 8 tracks the SWA batch-norm
        # statistics (recomputed exactly) amplify the per-rank-BN weight drift far beyond what real runs see
        # (pinned: chosen on validation, the two runs could ship different candidates)
        "final=best", "final_choice=pinned"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from musetag.data.synth import make_corpus

    root = tmp_path_factory.mktemp("ddp")
    # 8 training tracks: the global batch of 4 splits evenly, 2 per process
    make_corpus(root / "corpus", n_clips=16, seconds=1.5, seed=7, clips_per_artist=1, split_fractions=(0.5, 0.25, 0.25))
    return root / "corpus" / "dataset.toml"


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(dataset, tmp_path):
    sets = sum((["--set", s] for s in SETS), [])
    single = tmp_path / "single"
    one = subprocess.run([sys.executable, "-m", "musetag", "train", "demo", "--data", str(dataset), "--out", str(single),
                          *sets], env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    ddp = tmp_path / "ddp"
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
                          "-m", "musetag", "train", "demo", "--data", str(dataset), "--out", str(ddp), *sets],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]

    a = json.loads((single / "summary.json").read_text())
    b = json.loads((ddp / "summary.json").read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert b["n_tracks"] == a["n_tracks"]
    # one writer: one metrics line per epoch, one set of predictions in the dataset's order
    ma = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len(ma) == len(mb) == 2
    # each process normalises its half of the batch (no SyncBatchNorm on CPU), so results agree
    # closely but not bit for bit (measured: losses within 0.003, predictions within 0.008)
    for ra, rb in zip(ma, mb):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], abs=0.01)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], abs=0.01)
    pa = np.load(single / "predictions" / "validation.npy")
    pb = np.load(ddp / "predictions" / "validation.npy")
    assert pa.shape == pb.shape
    assert np.abs(pa - pb).max() < 0.03
    np.testing.assert_array_equal(np.load(single / "predictions" / "validation_targets.npy"),
                                  np.load(ddp / "predictions" / "validation_targets.npy"))


def test_shards_cover_the_epoch_once():
    from musetag.training.data import EpochSampler

    whole = EpochSampler(10, seed=3).order()
    parts = [EpochSampler(10, seed=3, rank=r, world_size=2).order() for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    # rank r holds positions r, r + 2, ...: a global batch is the same items as one process's batch
    assert [item for pair in zip(*parts) for item in pair] == whole
