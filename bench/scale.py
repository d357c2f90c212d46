"""Catalogue scale: measured per-track cost of `musetag tag` / `musetag embed`, and what a
1-million-track run costs.

Measured here, on real full-length MP3s (``../shared/data/jamendo-songs``), in one process
(``--workers 0``, one torch thread) so that the process CPU time is the core-seconds a track costs:

- the front end alone (decode + resample + log-mel + windows: what worker processes do);
- ``tag_files`` and ``embed_files`` end to end, for two model packages (random weights: the cost
  does not depend on the values): ``bour_convs`` (Bour 2021, 128-band mels at 44.1 kHz, 224-frame
  segments) and ``simplecnn`` (SoundFusion, 64 bands, 431-frame segments).

The estimate scales core-seconds per second of audio to the mean MTG-Jamendo track duration (read
from ``mtg-jamendo/autotagging_moodtheme.tsv``) times 1,000,000 tracks, and prices core-hours at
``--price`` dollars per vCPU-hour (an assumption, stated in the output). The peer of the ``ratio:``
line is the front end: how many times the whole pipeline costs what decoding and mel alone cost.

Usage: python bench/scale.py [--songs 10] [--price 0.045] ; writes bench/results/scale.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SHARED = Path(os.environ.get("MUSETAG_SHARED_DATA", BENCH.parent.parent / "shared" / "data"))

MODELS = {  # name -> (preset, segment frames)
    "bour_convs": ("bour128", 224),
    "simplecnn": ("fusion64", 431),
}


def _package(tmp: Path, name: str, preset: str, frames: int) -> Path:
    import torch

    from musetag.features import get_preset
    from musetag.models import create_model
    from musetag.inference.package import save_package

    features = get_preset(preset)
    torch.manual_seed(0)
    model = create_model(name, n_classes=56, in_channels=2 if not features.mono else 1)
    return save_package(
        tmp / f"pkg-{name}", model_name=name, model_args=model.musetag_config["args"], state_dict=model.state_dict(),
        features=features.to_dict(), tags=[f"tag{i:02d}" for i in range(56)], task="multilabel",
        segment={"frames": frames, "hop": frames, "aggregation": "mean"},
    )


def _measure(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _mean_duration() -> tuple[float, str]:
    tsv = SHARED / "mtg-jamendo" / "autotagging_moodtheme.tsv"
    if not tsv.exists():
        return 240.0, "assumed 240 s (MTG-Jamendo metadata not available here)"
    durations = []
    for line in tsv.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.rstrip("\r").split("\t")
        if len(parts) > 4:
            try:
                durations.append(float(parts[4]))
            except ValueError:
                pass
    mean = sum(durations) / len(durations)
    return mean, f"{mean:.1f} s, the mean of the {len(durations):,} MTG-Jamendo mood/theme tracks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=10, help="how many of the shared full-length songs to use")
    parser.add_argument("--price", type=float, default=0.045,
                        help="dollars per vCPU-hour (assumption; on-demand compute-optimised x86 is about this)")
    parser.add_argument("--tracks", type=int, default=1_000_000, help="catalogue size to estimate for")
    args = parser.parse_args(argv)
    songs = sorted((SHARED / "jamendo-songs" / "mp3").glob("*.mp3"))[: args.songs]
    if not songs:
        print(f"skipped: no songs in {SHARED / 'jamendo-songs'}")
        return 0

    import torch

    from musetag.audio import audio_info
    from musetag.tag.embed_files import embed_files
    from musetag.tag.batch import tag_files
    from musetag.inference.frontend import FrontEnd
    from musetag.inference.tagger import Tagger

    torch.set_num_threads(1)
    audio_s = sum(audio_info(s).duration for s in songs)
    mean_dur, dur_note = _mean_duration()
    rows, est = [], []
    ratios = []
    with tempfile.TemporaryDirectory(prefix="musetag-bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        for name, (preset, frames) in MODELS.items():
            pkg = _package(tmp, name, preset, frames)
            tagger = Tagger.from_package(pkg, batch_size=32)
            front = FrontEnd(tagger.package.features, tagger.package.segment)
            front.segments(songs[0])  # warm-up: imports, mel filters
            fe_wall, fe_cpu = _measure(lambda: [front.segments(s) for s in songs])
            tag_wall, tag_cpu = _measure(lambda: tag_files(tagger, songs, tmp / f"{name}.csv", progress=False))
            emb_wall, emb_cpu = _measure(
                lambda: embed_files(pkg, songs, tmp / f"{name}.npy", batch_size=32, progress=False))
            for what, wall, cpu in (("front end only", fe_wall, fe_cpu), ("tag", tag_wall, tag_cpu),
                                    ("embed", emb_wall, emb_cpu)):
                per_audio = cpu / audio_s  # core-seconds per second of audio
                rows.append(f"| `{name}` ({preset}) | {what} | {audio_s / cpu:.1f} | {cpu / len(songs):.2f} | "
                            f"{audio_s / wall:.1f} |")
                if what != "front end only":
                    core_h = per_audio * mean_dur * args.tracks / 3600
                    est.append((name, what, core_h))
            ratios.append((name, tag_cpu / fe_cpu, emb_cpu / fe_cpu))
            print(f"{name}: front end {audio_s / fe_cpu:.1f}, tag {audio_s / tag_cpu:.1f}, "
                  f"embed {audio_s / emb_cpu:.1f} s of audio per core-second", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for name, r_tag, r_emb in ratios:
        print(f"ratio: {name} tag costs {r_tag:.2f}x the front end alone (embed {r_emb:.2f}x)")
    est_rows = []
    for name, what, core_h in est:
        est_rows.append(
            f"| `{name}` | {what} | {core_h:,.0f} | {core_h / 64:,.1f} h | {core_h / (16 * 64):,.1f} h | "
            f"${core_h * args.price:,.0f} |"
        )
    md = f"""## Catalogue scale: 1 million tracks (`bench/scale.py`)

Measured on {len(songs)} real full-length MP3s ({audio_s / 60:.1f} min of 44.1 kHz stereo audio,
`../shared/data/jamendo-songs`), one process, one torch thread, decoding in-process (`--workers 0`),
so process CPU time = core-seconds. Model weights are random (cost does not depend on them).
Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average
{load:.1f} at the end: wall-clock figures are pessimistic, CPU-time figures much less so), torch
{torch.__version__}, CPU only (no GPU was available to measure).

| model (preset) | stage | s of audio per core-second | core-seconds per song (mean {audio_s / len(songs):.0f} s) | s of audio per wall second |
|---|---|---:|---:|---:|
{chr(10).join(rows)}

Estimate for **{args.tracks:,} tracks** of mean duration {dur_note}: core-hours =
(core-seconds per second of audio) x {mean_dur:.0f} s x {args.tracks:,} / 3600, run as
`musetag tag|embed MODEL /catalogue -r --shard I/N` on N machines (or an array job) and joined with
`musetag merge`. Cost at an assumed ${args.price:.3f} per vCPU-hour (on-demand compute-optimised x86;
spot prices are typically 60-70% lower):

| model | command | core-hours | wall time on one 64-core machine | on 16 such machines (`--shard I/16`) | cost |
|---|---|---:|---:|---:|---:|
{chr(10).join(est_rows)}

Wall times assume one worker process per core and scale linearly (the work is embarrassingly
parallel; storage bandwidth is not included: 1 M MP3s of {mean_dur:.0f} s at 320 kbit/s are about
{mean_dur * 40e3 * args.tracks / 1e12:.1f} TB to read).

With GPUs (`torchrun --nproc_per_node=G -m musetag tag ...`, one GPU per process) the network
leaves the CPU and the front end row above becomes the bound: its core-seconds per track say how
many decoding workers (`--workers`) each GPU needs to stay busy. GPU throughput itself was not
measured on this machine.

Command: `python bench/scale.py --songs {len(songs)} --price {args.price}`
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.md").write_text(md)
    print(f"wrote {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
