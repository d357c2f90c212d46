"""Run every benchmark in bench/ and assemble bench/RESULTS.md.

Each ``bench/<topic>.py`` prints its figures (and a ``ratio:`` line against a peer measured in the
same run) and writes its own markdown section to ``bench/results/<topic>.md``. Sections recorded by
longer experiments (for example ``learning.md``, written from training runs with their exact
commands) are kept and included as they are. Usage: ``python bench/run_all.py [--only NAME ...]``.

``bench/RESULTS.md`` records, for every script, the commit it ran on (``+dirty`` when the working tree
had changes), the 1-minute load average before and after it (the machine is shared: a load above the
core count means the wall-clock ratios understate what idle cores give), its status, its ``ratio``
lines and its wall time. ``--only`` reruns some scripts and keeps the other rows as they were, each
with its own commit, so a row never claims a commit it did not run on.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def machine_summary() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"- machine: {cpu}, {os.cpu_count()} cores{mem}, GPU: {gpu}\n"
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, {platform.platform()}\n"
    )


def current_commit() -> str:
    """``HEAD``'s short hash, ``+dirty`` when tracked files differ from it, or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BENCH, text=True,
                               capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def previous_rows() -> dict[str, str]:
    """The rows of the last ``RESULTS.md`` table, by script name (kept for scripts not rerun)."""
    rows: dict[str, str] = {}
    path = BENCH / "RESULTS.md"
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        if not line.startswith("| `bench/"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4:  # written before commits and loads were recorded
            cells = [cells[0], "not recorded", "not recorded"] + cells[1:]
        rows[line.split("`")[1]] = "| " + " | ".join(cells) + " |"
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these benchmarks (file stems)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if args.only:
        scripts = [p for p in scripts if p.stem in set(args.only)]
    failures = []
    rows = previous_rows()
    commit = current_commit()
    for script in scripts:
        print(f"== bench/{script.name}", flush=True)
        load_before = load_average()
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(script)], cwd=BENCH.parent, text=True, capture_output=True,
                timeout=args.timeout,
            )
            out, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out, code = f"{exc.stdout or ''}\nTIMEOUT after {args.timeout:.0f} s", -1
        elapsed = time.perf_counter() - start
        print(out.rstrip(), flush=True)
        ratios = [line.strip() for line in out.splitlines() if line.strip().startswith("ratio")]
        status = "ok" if code == 0 else f"failed (exit {code})"
        if code != 0:
            failures.append(script.name)
        rows[f"bench/{script.name}"] = (
            f"| `bench/{script.name}` | {commit} | {load_before:.1f} -> {load_average():.1f} | {status} | "
            f"{', '.join(ratios) or '-'} | {elapsed:.0f} s |"
        )
    sections = []
    for md in sorted(RESULTS.glob("*.md")):
        sections.append(md.read_text().strip())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# musetag benchmark results\n\n"
        "Written by `make bench` (`bench/run_all.py`). Every speed figure is a ratio against a peer measured in the\n"
        "same run on the same machine, because these machines are noisy.\n\n"
        f"- date: {now}\n{machine_summary()}\n"
        "## Runs\n\nEach row: the commit the script ran on and the 1-minute load average before -> after it "
        f"({os.cpu_count()} cores; the machine is shared with other jobs).\n\n"
        "| script | commit | load average | status | ratio | wall time |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows[k] for k in sorted(rows))
        + "\n\n"
        + "\n\n".join(sections)
        + "\n"
    )
    (BENCH / "RESULTS.md").write_text(text)
    print(f"wrote {BENCH / 'RESULTS.md'}")
    if failures:
        print("failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
