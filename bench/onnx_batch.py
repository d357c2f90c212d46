"""CPU seconds per window and peak memory of onnxruntime sessions by windows per run.

For every catalogue model pulled on this machine (its ONNX graph in the cache, exported by
``musetag pull``), a fresh process builds the session as musetag does
(``musetag.inference.export.onnx_session``: denormals as zero, no spinning) and runs 32 random
windows in runs of 1, 2, 4, 16 and 32 windows (a warm-up run first); it prints CPU s per window
(``time.process_time``) and the process's peak RSS (``VmHWM``). Both sides of each row run in the same session
of this script, on the same machine, so the ratios hold under load. The rule the runner follows
(``musetag.inference.runners.ONNX_RUN_ELEMENTS`` input numbers per run) is printed beside.

Usage: python bench/onnx_batch.py [--models a,b] [--report bench/results/onnx-batch.md]
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
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))

CHILD = r"""
import json, sys, time
import numpy as np
from musetag.inference.export import onnx_session
path, rows = sys.argv[1], int(sys.argv[2])
s = onnx_session(path)
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal([rows] + [d for d in i.shape[1:]]).astype(np.float32)
s.run(None, {i.name: x})
runs = max(1, 32 // rows)
t = time.process_time()
for _ in range(runs):
    s.run(None, {i.name: x})
cpu = (time.process_time() - t) / (runs * rows)
# VmHWM: this process's peak RSS since exec (ru_maxrss would include the parent's at fork)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"cpu_per_window": cpu, "peak_mb": hwm / 1024,
                  "window": [int(d) for d in i.shape[1:]]}))
"""


def measure(path: Path, rows: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(rows)], capture_output=True, text=True,
                         env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{path}: {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    from musetag.inference.export import onnx_for_package
    from musetag.inference.hub import package_dir
    from musetag.inference.loading import load_model
    from musetag.inference.runners import ONNX_RUN_ELEMENTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mtg-jamendo-baseline,jamendo-musicnn,jamendo-fcn,jamendo-crnn")
    ap.add_argument("--rows", default="1,2,4,16,32")
    ap.add_argument("--report", type=Path, default=BENCH / "results" / "onnx-batch.md")
    args = ap.parse_args()
    rows_list = [int(r) for r in args.rows.split(",")]
    lines = []
    for name in args.models.split(","):
        if not package_dir(name).is_dir():
            print(f"{name}: skipped (not pulled here: musetag pull {name})")
            continue
        path = onnx_for_package(load_model(name))
        got = {r: measure(path, r) for r in rows_list}
        window = got[rows_list[0]]["window"]
        elements = 1
        for d in window:
            elements *= d
        chosen = max(1, ONNX_RUN_ELEMENTS // elements)
        base = got[rows_list[-1]]
        cells = " | ".join(f"{got[r]['cpu_per_window']:.3f} s, {got[r]['peak_mb']:.0f} MB" for r in rows_list)
        line = f"| {name} | {'x'.join(map(str, window))} | {chosen} | {cells} |"
        print(line, flush=True)
        lines.append(line)
    load = os.getloadavg()
    head = ("## onnxruntime: windows per run (`bench/onnx_batch.py`)\n\n"
            f"CPU s per window and peak RSS of one process per cell (32 random windows after a warm-up run), "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. "
            f"The runner now splits a batch into runs of at most {ONNX_RUN_ELEMENTS:,} input numbers "
            "(column 'rows per run'); before, `musetag tag`'s default batch of 32 windows went in one run.\n\n"
            "| model | window | rows per run | " + " | ".join(f"{r} a run" for r in rows_list) + " |\n"
            "|---|---|---:|" + "---:|" * len(rows_list) + "\n")
    args.report.write_text(head + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
