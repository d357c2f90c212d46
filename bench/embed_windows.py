"""CPU seconds per clip and backbone of a track embedding: the embeddings' window rule against the upstream one.

For every catalogue backbone, ``musetag embed``'s numbers (``load_embedder(NAME).embed``) on 30 s gtzan3 clips
with ``windows="fit"`` (consecutive windows overlap by at most half their length, the default of ``embed:``
presets and ``musetag embed``) and, as the peer in the same run, ``windows="upstream"`` (the catalogue model's
own rule, e.g. 16 chunks of 29 s for the fcn/crnn backbones). Each figure is this process's CPU time (user +
system, ``time.process_time``) per clip, decoding included, one torch thread, after a warm-up on 2 s of
silence per setting. Backbones sharing an architecture and input (``msd-fcn``, ``mtat-fcn`` and ``jamendo-fcn``)
cost the same; ``--models`` times a subset. Usage: ``python bench/embed_windows.py [--clips 1] [--models a,b]``;
writes ``bench/results/embed_windows.md``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
DATA = BENCH.parent.parent / "shared" / "data" / "gtzan3" / "audio"


def _clips(n: int) -> list[str]:
    genres = ("classical", "jazz", "rock")
    files = [sorted((DATA / g).glob("*.mp3"))[i] for i in range(n) for g in genres][:n]
    if len(files) < n:
        raise SystemExit(f"{DATA}: needs {n} gtzan3 clips (see ../shared/data/README.md)")
    return [str(f) for f in files]


def measure(name: str, windows: str, clips: list[str]) -> tuple[float, float]:
    """``(CPU seconds per clip, windows per clip)`` of ``name`` embedding ``clips`` (after a warm-up)."""
    import numpy as np

    from musetag.inference.embed import load_embedder

    embedder = load_embedder(name, windows=windows)
    embedder.embed(np.zeros(2 * 16000, np.float32), 16000)
    cpu, count = 0.0, 0
    for clip in clips:
        start = time.process_time()
        embedder.embed(clip)
        cpu += time.process_time() - start
        count += len(embedder.front.last_starts)
    return cpu / len(clips), count / len(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1, help="30 s clips timed per backbone and rule")
    parser.add_argument("--models", default=None, help="comma-separated backbones (default: the whole catalogue)")
    parser.add_argument("--out", default=str(BENCH / "results" / "embed_windows.md"))
    args = parser.parse_args()
    import torch

    from musetag.inference.hub import catalogue, pull

    torch.set_num_threads(1)
    clips = _clips(args.clips)
    rows = []
    names = args.models.split(",") if args.models else sorted(catalogue())
    for name in names:
        pull(name, progress=False)
        up, n_up = measure(name, "upstream", clips)
        fit, n_fit = measure(name, "fit", clips)
        rows.append(f"| {name} | {n_up:g} | {up:.2f} | {n_fit:g} | {fit:.2f} | {up / fit:.1f}x |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "## Embedding windows: CPU seconds per clip and backbone (`bench/embed_windows.py`)",
        "",
        f"{args.clips} gtzan3 clip(s) of 30 s per backbone and rule (after a warm-up), `load_embedder(NAME).embed`, "
        f"decoding included, one torch thread; {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
        "cores shared with other jobs. `fit`: consecutive windows overlap by at most half their length (the default of "
        "`embed:` presets and `musetag embed`); `upstream`: the catalogue model's own rule, measured in the same run. "
        "CPU time on a loaded machine is inflated by contention; compare the two columns of a row.",
        "",
        "| backbone | windows per clip, upstream | CPU s per clip, upstream | windows per clip, fit | CPU s per clip, fit "
        "| ratio upstream / fit |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
