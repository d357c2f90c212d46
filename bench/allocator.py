"""glibc allocator tuning (``musetag._allocator``) against glibc's defaults, on a forward pass with large buffers.

The workload is what ``musetag tag`` / ``musetag embed`` run for the FCN of Won et al. (the
``jamendo-fcn`` architecture, untrained weights: the arithmetic is the same): batches of 16 windows
of 29 s at 16 kHz through ``forward_features``, one torch thread, in a fresh process per setting
(``MUSETAG_MALLOC=default`` for the peer). Each process reports its own user and system CPU,
wall-clock time and minor page faults after one warm-up batch (the steady state of a long run). Usage: ``python bench/allocator.py [--batches 2]``; writes
``bench/results/allocator.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from musetag._allocator import tune_allocator
applied = tune_allocator()
import torch
torch.set_num_threads(1)
from musetag.models import create_model
model = create_model("won_fcn", n_classes=50).eval()
x = torch.randn(16, 1, 464000, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    model.forward_features(x)  # warm-up (one batch) outside the figures: the steady state of a long run
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(int(sys.argv[2])):
        model.forward_features(x)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"applied": applied, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                  "wall": wall, "faults": r1.ru_minflt - r0.ru_minflt}))
"""


def measure(setting: str, batches: int) -> dict:
    env = {**os.environ, "MUSETAG_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(SRC), str(batches)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=2)
    args = ap.parse_args()
    peer, tuned = measure("default", args.batches), measure("", args.batches)
    if not tuned["applied"]:
        print("allocator: not glibc on Linux; the tuning does not apply here")
        return
    windows = 16 * args.batches
    rows = [("glibc defaults (MUSETAG_MALLOC=default)", peer), ("musetag tuned (default)", tuned)]
    lines = [
        "## Allocator: large forward-pass buffers reused from the heap (`bench/allocator.py`)",
        "",
        f"FCN (`jamendo-fcn` architecture) `forward_features` on {windows} windows of 29 s (batches of 16), one torch "
        f"thread, a fresh process per setting; {platform.machine()}, {os.cpu_count()} cores shared with other jobs.",
        "",
        "| allocator | user CPU s | system CPU s | wall s | minor page faults |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {r['user']:.1f} | {r['sys']:.1f} | {r['wall']:.1f} | {r['faults']:,} |" for name, r in rows],
        "",
        f"ratio: wall-clock, glibc defaults / tuned: {peer['wall'] / tuned['wall']:.2f}x; "
        f"CPU (user + system): {(peer['user'] + peer['sys']) / (tuned['user'] + tuned['sys']):.2f}x; "
        f"page faults: {peer['faults'] / max(1, tuned['faults']):.0f}x",
        "",
    ]
    print("\n".join(lines))
    (BENCH / "results" / "allocator.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
