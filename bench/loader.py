"""Benchmark: can the data loader feed training? Random-crop batches per second from a feature cache
vs. the batches per second one training step of ``bour_convs`` consumes.

Loader: what ``musetag train`` uses, :class:`musetag.training.data.CropDataset` drawn by
:class:`~musetag.training.data.EpochSampler` over a prepared cache (memory-mapped ``.npy``, only the
crop's frames read, normalised with the cache's statistics), ``DataLoader(batch_size=32, num_workers=2,
collate_fn=collate)``.
Without ``--cache`` a cache of full-length tracks is built in a temporary folder: 128 tracks of
96 mel bands x 10,000 frames (3.6 minutes each at 46.9 frames/s, the length of MTG-Jamendo tracks),
float16, random values, registered through the same ``build_cache`` path as official features.

Peer: one SGD step (Nesterov, lr 0.5, as Bour) of ``bour_convs`` (96 mels) on a (32, 1, 96, crop)
batch: forward, BCE-with-logits loss, backward, step, measured in the same run with torch's default
threads. ``ratio`` = loader batches/s / training steps/s (target >= 5: the loader is never the
bottleneck). Writes ``bench/results/loader.md``.

    .venv/bin/python bench/loader.py [--cache DIR] [--crop 128] [--batch 32] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "loader.md"


def build_synthetic_cache(root: Path, n_tracks: int, frames: int, n_mels: int = 96) -> Path:
    from musetag.data import TrackRecord
    from musetag.data.cache import build_cache
    from musetag.features import get_preset

    rng = np.random.default_rng(0)
    tags = [f"tag{k:02d}" for k in range(56)]
    records = []
    for i in range(n_tracks):
        path = root / "mel" / f"{i:04d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        length = int(frames * rng.uniform(0.6, 1.4))
        np.save(path, rng.normal(-40.0, 15.0, size=(n_mels, length)).astype(np.float16))
        chosen = tuple(sorted(set(rng.choice(tags, size=int(rng.integers(1, 4))).tolist())))
        records.append(TrackRecord(id=f"track_{i:04d}", feature_path=path, tags=chosen, split="train"))
    build_cache(records, get_preset("jamendo96"), root / "cache", progress=False, workers=0)
    return root / "cache"


def training_data(cache_dir: Path):
    """The cache's tracks as the training split of a :class:`~musetag.training.data.TrainingData`."""
    from musetag.data.cache import FeatureCache
    from musetag.training.data import SplitData, TrainingData

    cache = FeatureCache(cache_dir)
    rows = cache.indices(None)
    split = SplitData("train", [cache.tracks[i]["id"] for i in rows], [cache.file(i) for i in rows],
                      cache.targets(rows))
    config = cache.feature_config
    return TrainingData(cache.task, cache.vocab.to_list(), config, {"train": split}, Path(cache_dir),
                        normalize=config.mean is not None)


def loader_rate(cache_dir: Path, *, crop: int, batch: int, workers: int, min_seconds: float) -> tuple[float, float]:
    import torch
    from torch.utils.data import DataLoader

    from musetag.training.data import CropDataset, EpochSampler, collate

    data = training_data(cache_dir)
    sampler = EpochSampler(len(data.splits["train"]), seed=0)
    loader = DataLoader(CropDataset(data, "train", crop), batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    for i, _ in enumerate(loader):  # warm-up epoch: workers started, page cache filled
        if i >= 3:
            break
    n, epoch = 0, 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        sampler.set_epoch(epoch)
        for b in loader:
            assert b["x"].shape == (batch, 1, data.feature_config.n_mels, crop)
            n += 1
        epoch += 1
    elapsed = time.perf_counter() - start
    return n / elapsed, (time.process_time() - cpu0)


def train_rate(*, crop: int, batch: int, n_mels: int, steps: int) -> float:
    import torch

    from musetag.models import create_model

    torch.manual_seed(0)
    model = create_model("bour_convs", n_classes=56, n_mels=n_mels)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 1, n_mels, crop)
    y = (torch.rand(batch, 56) < 0.05).float()

    def step():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="an existing cache (default: build a synthetic one)")
    parser.add_argument("--tracks", type=int, default=128)
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum loader measurement time")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import torch

    tmp = None
    cache_dir = args.cache
    if cache_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="musetag-bench-loader-"))
        t0 = time.perf_counter()
        cache_dir = build_synthetic_cache(tmp, args.tracks, args.frames)
        print(f"built a {args.tracks}-track cache in {time.perf_counter() - t0:.1f} s: {cache_dir}")
    try:
        from musetag.data.cache import FeatureCache

        n_mels = FeatureCache(cache_dir).index["features"]["n_mels"]
        loader_bps, loader_cpu = loader_rate(cache_dir, crop=args.crop, batch=args.batch, workers=args.workers,
                                             min_seconds=args.seconds)
        train_sps = train_rate(crop=args.crop, batch=args.batch, n_mels=n_mels, steps=args.steps)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = loader_bps / train_sps
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"loader: {loader_bps:.1f} batches/s (batch {args.batch}, crop {args.crop}, {args.workers} workers)")
    print(f"training step (bour_convs, SGD): {train_sps:.2f} batches/s ({torch.get_num_threads()} threads)")
    print(f"ratio: {ratio:.1f}")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        source = "a synthetic cache of {} full-length tracks (96 x ~{} frames, float16)".format(args.tracks, args.frames) \
            if args.cache is None else f"the cache `{args.cache}`"
        RESULTS.write_text(
            "## Data loader vs training step (`bench/loader.py`)\n\n"
            f"Random {args.crop}-frame crops, batch {args.batch}, from {source}, memory-mapped, through "
            f"training's `CropDataset` + `EpochSampler`, `DataLoader(num_workers={args.workers})`. "
            "Peer: one training step of `bour_convs` (96 mels; forward, "
            f"BCE, backward, SGD Nesterov) on the same batch shape, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{load:.1f}.\n\n"
            "| | batches per second |\n|---|---:|\n"
            f"| loader | {loader_bps:.1f} |\n| training step | {train_sps:.2f} |\n\n"
            f"**ratio: {ratio:.1f}** (target >= 5: the loader is never the bottleneck).\n"
            "Both are measured one after the other in the same run; during training they share the cores.\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
