"""The HTTP service under load: ``musetag serve`` (the default pretrained model unless ``--model``)
on 127.0.0.1, full songs POSTed by several concurrent clients.

Starts the server as a user does (``python -m musetag serve MODEL --host 127.0.0.1``), waits for
``/healthz``, then ``--clients`` threads POST the songs of ``--songs`` (raw bodies, cycled) until
``--requests`` have been answered or ``--max-seconds`` have passed (both bound the run). A 503 is
counted and retried after its ``Retry-After`` (the latency of that request includes the wait). The
memory of the server's whole process tree (the server, its decoders and the forkserver) is read from
``/proc`` every 0.5 s: the sum of RSS (what the issue's target is stated in) and of PSS (shared pages
divided among the processes, so it does not count torch's pages once per process).

Prints requests/s, p50/p95 latency, the 503 count, the tree's RSS after the first 100 requests and
after all (both measured while the server is idle: the clients pause after the first 100 until the
requests in flight are answered), and ``ratio:`` = RSS after all / RSS after 100 (target: within 20 %, i.e. <= 1.20; the
throughput target is >= 2.5 full-song requests/s with the default model on 2 cores). Writes
``bench/results/service.md`` and the RSS curve ``bench/results/service.png``.

Usage: ``python bench/service.py [--requests 1000] [--max-seconds 1000] [--clients 8]``; the offline
model mirror is ``MUSETAG_MODEL_MIRROR`` (default ``/work/shared/models`` when it exists). Linux only.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "service.md"
CURVE = RESULTS.with_suffix(".png")
SONGS = Path("/work/shared/data/jamendo-songs/mp3")
MIRROR = Path("/work/shared/models")
NOTES = (
    "- allocator policy (measured 2026-12-06 on this machine, load average 10-15, 200 requests each): with the "
    "server policy of `musetag serve` (glibc's adaptive thresholds, 2 malloc arenas, `malloc_trim` after each "
    "request and each decode) the idle tree held 966 MB RSS after 200 requests (server 319 MB, decoders 206 + "
    "206 MB); with `MUSETAG_MALLOC=default` (glibc untouched) 1277 MB after 100 and 1295 MB after 200 (server "
    "423 MB, decoders 320 + 317 MB). The batch CLI's 1 GiB thresholds, which `serve` used before, grew the server "
    "process alone from 407 to 926 MB over 300 requests (issue 27).\n"
    "- CPU per request is the figure to read on a busy machine: requests/s on 2 idle cores is at most 2 / (server + "
    "decoders) CPU seconds. The decoders' share is the exact (Essentia-equal) decode from the song's start to the "
    "end of its centred 29.1 s excerpt (FFmpeg's fixed-point decoder cannot seek exactly) and the numpy features; "
    "the server's is HTTP and the ONNX network (`--backend auto`: neither the server nor its decoders import "
    "torch).\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/*/children)."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return seen


def memory_mb(pid: int) -> tuple[float, float, list[float]]:
    """(sum of RSS, sum of PSS, RSS per process) of ``pid``'s process tree in MB."""
    rss, pss, each = 0, 0, []
    for p in tree(pid):
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:])
        except (OSError, ValueError):
            continue
        r, s = int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
        rss, pss = rss + r, pss + s
        each.append(r / 1024)
    return rss / 1024, pss / 1024, each


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the server process itself and of its descendants (decoders,
    forkserver) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    own = rest = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if p == pid:
            own += used
        else:
            rest += used
    return own, rest


class Server:
    def __init__(self, model: str, extra: list[str], log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.log = open(log, "wb")
        self.cmd = [sys.executable, "-m", "musetag", "serve", model, "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def wait(self, timeout: float = 600.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"musetag serve exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"musetag serve was not ready after {timeout:g} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


class Load:
    """Client threads sharing one request counter; a sampler thread records the memory curve."""

    def __init__(self, url: str, songs: list[tuple[str, bytes]], requests: int, max_seconds: float,
                 key: str | None) -> None:
        self.url, self.songs, self.requests, self.max_seconds = url, songs, requests, max_seconds
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.lock = threading.Lock()
        self.next = 0
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.n503 = 0
        self.done = 0
        self.curve: list[tuple[float, int, float, float]] = []  # (seconds, answered, RSS MB, PSS MB)
        self.at_100: tuple[float, float] | None = None
        self.stop = threading.Event()

    def client(self, upto: int, deadline: float) -> None:
        with httpx.Client(timeout=600) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                with self.lock:
                    if self.next >= upto:
                        return
                    i, self.next = self.next, self.next + 1
                name, data = self.songs[i % len(self.songs)]
                started = time.perf_counter()
                while True:
                    r = http.post(self.url + "/v1/tag", content=data, headers=self.headers, params={"filename": name})
                    if r.status_code != 503:
                        break
                    with self.lock:
                        self.n503 += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                with self.lock:
                    if r.status_code == 200:
                        self.latencies.append(time.perf_counter() - started)
                    else:
                        self.failures.append(f"{name}: {r.status_code} {r.text[:200]}")
                    self.done += 1

    def sample(self, pid: int, t0: float) -> None:
        while not self.stop.is_set():
            rss, pss, _ = memory_mb(pid)
            with self.lock:
                done = self.done
            self.curve.append((time.monotonic() - t0, done, rss, pss))
            time.sleep(0.5)

    def run(self, pid: int, clients: int) -> float:
        """Two phases: the first 100 requests, a pause while the server is idle (its memory then is
        ``at_100``), the rest; both within ``max_seconds`` (a request in flight at the deadline is
        still answered, but not counted in requests/s)."""
        t0 = time.monotonic()
        deadline = t0 + self.max_seconds
        sampler = threading.Thread(target=self.sample, args=(pid, t0), daemon=True)
        sampler.start()
        for upto in (min(100, self.requests), self.requests):
            threads = [threading.Thread(target=self.client, args=(upto, deadline), daemon=True)
                       for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if upto == min(100, self.requests):
                for t in threads:
                    t.join(600)  # the in-flight requests end: the server is idle
                time.sleep(1.0)
                self.at_100 = memory_mb(pid)[:2]
        elapsed = time.monotonic() - t0
        with self.lock:
            self.answered_in_time = self.done
        for t in threads:
            t.join(600)
        self.stop.set()
        sampler.join(5)
        return elapsed


def plot(curve: list[tuple[float, int, float, float]], title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    arr = np.array(curve)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.plot(arr[:, 1], arr[:, 2], label="RSS, sum over the tree")
    ax.plot(arr[:, 1], arr[:, 3], label="PSS, sum over the tree")
    ax.set_xlabel("requests answered")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(CURVE)
    plt.close(fig)
    return True


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mtg-jamendo-baseline", help="served model (default: the default pretrained one)")
    p.add_argument("--songs", type=Path, default=SONGS, help="folder of full songs (*.mp3) to POST")
    p.add_argument("--requests", type=int, default=1000, help="requests to send (bounds the run)")
    p.add_argument("--max-seconds", type=float, default=1000.0, help="stop sending after this many seconds")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--server-args", default="", help="extra `musetag serve` options, one string")
    p.add_argument("--report", type=Path, default=RESULTS, help="results file (markdown; the curve beside it)")
    args = p.parse_args(argv)
    if args.requests < 1 or args.max_seconds <= 0 or args.clients < 1:
        p.error("--requests and --clients must be at least 1 and --max-seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    global RESULTS, CURVE
    args = parse(argv)
    RESULTS, CURVE = args.report, args.report.with_suffix(".png")
    songs = [(f.name, f.read_bytes()) for f in sorted(args.songs.glob("*.mp3"))]
    if not songs:
        raise SystemExit(f"no *.mp3 songs in {args.songs}; give a folder of full songs with --songs")
    env = dict(os.environ)
    if "MUSETAG_MODEL_MIRROR" not in env and MIRROR.is_dir():
        env["MUSETAG_MODEL_MIRROR"] = str(MIRROR)
    key = "bench-" + os.urandom(8).hex()
    env["MUSETAG_API_KEY"] = key  # the server as it would be exposed: with its key check on
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"musetag-service-{os.getpid()}.log"
    load_before = os.getloadavg()
    server = Server(args.model, args.server_args.split(), log, env)
    try:
        ready_s = server.wait()
        rss0, pss0, _ = memory_mb(server.proc.pid)
        cpu0 = cpu_seconds(server.proc.pid)
        load = Load(server.url, songs, args.requests, args.max_seconds, key)
        elapsed = load.run(server.proc.pid, args.clients)
        rss1, pss1, each = memory_mb(server.proc.pid)
        cpu1 = cpu_seconds(server.proc.pid)
    finally:
        server.stop()
    load_after = os.getloadavg()
    cpu = ((cpu1[0] - cpu0[0]) / max(load.done, 1), (cpu1[1] - cpu0[1]) / max(load.done, 1))
    report(args, songs, load, elapsed, ready_s, (rss0, pss0), (rss1, pss1, each), load_before, load_after, cpu)
    return 1 if load.failures else 0


def report(args, songs, load: Load, elapsed, ready_s, start, end, load_before, load_after, cpu) -> None:
    lat = np.array(load.latencies) if load.latencies else np.array([np.nan])
    rate = load.answered_in_time / elapsed
    p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
    rss100, pss100 = load.at_100 or (float("nan"), float("nan"))
    rss1, pss1, each = end
    ratio = rss1 / rss100
    mean_mb = np.mean([len(d) for _, d in songs]) / 2**20
    lines = [
        f"requests answered: {load.done} of {args.requests} sent by {args.clients} clients "
        f"({load.answered_in_time} within {elapsed:.0f} s; failures: {len(load.failures)})",
        f"requests/s: {rate:.2f}",
        f"latency p50: {p50:.2f} s   p95: {p95:.2f} s   (including waits after a 503)",
        f"503 answers: {load.n503}",
        f"CPU per request: {cpu[0]:.2f} s in the server process (network, HTTP), {cpu[1]:.2f} s in its decoders",
        f"tree RSS: {start[0]:.0f} MB ready, {rss100:.0f} MB after 100, {rss1:.0f} MB after all "
        f"(PSS {start[1]:.0f} / {pss100:.0f} / {pss1:.0f} MB)",
        f"ratio: {ratio:.3f}",
    ]
    print("\n".join(lines))
    for f in load.failures[:5]:
        print("  failed:", f)
    drawn = plot(load.curve, f"musetag serve {args.model}, {args.clients} clients, full songs")
    machine = (f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
               "(other work shares this machine: absolute figures are noisy)")
    RESULTS.write_text(
        f"## The service under load (`bench/service.py`)\n\n"
        f"`{' '.join(['musetag serve', args.model, '--host 127.0.0.1', args.server_args]).strip()}`, with an API key (the bearer check on), "
        f"ready {ready_s:.0f} s after start; {args.clients} concurrent clients POST the {len(songs)} full songs of "
        f"`{args.songs.name}/` (mean {mean_mb:.1f} MB MP3) as raw bodies, cycled, until {args.requests} requests "
        f"or {args.max_seconds:g} s. A 503 is retried after its Retry-After. Memory: the server's whole process tree "
        f"(server, decoders, forkserver) from /proc/PID/smaps_rollup every 0.5 s; the figures after 100 and after all "
        f"are taken while the server is idle (the clients pause after the first 100 until the requests in flight are "
        f"answered).\n\n"
        f"| figure | value |\n|---|---:|\n"
        f"| requests answered | {load.done} ({load.answered_in_time} within {elapsed:.0f} s) |\n"
        f"| failures (not 200, not 503) | {len(load.failures)} |\n"
        f"| **requests/s** | **{rate:.2f}** (target >= 2.5) |\n"
        f"| latency p50 / p95 | {p50:.2f} s / {p95:.2f} s |\n"
        f"| 503 answers | {load.n503} (target 0) |\n"
        f"| CPU per request: server process / decoders | {cpu[0]:.2f} s / {cpu[1]:.2f} s |\n"
        f"| tree RSS ready / after 100 / after all | {start[0]:.0f} / {rss100:.0f} / {rss1:.0f} MB |\n"
        f"| tree PSS ready / after 100 / after all | {start[1]:.0f} / {pss100:.0f} / {pss1:.0f} MB |\n"
        f"| RSS per process after all | {', '.join(f'{x:.0f}' for x in sorted(each, reverse=True))} MB |\n"
        f"| **ratio** RSS after all / after 100 | **{ratio:.3f}** (target <= 1.20) |\n\n"
        f"- machine: {machine}\n"
        f"- command: `python bench/service.py --requests {args.requests} --max-seconds {args.max_seconds:g} "
        f"--clients {args.clients}" + (f" --server-args '{args.server_args}'" if args.server_args else "") + "`\n"
        + (f"- the RSS curve: ![RSS curve]({CURVE.name})\n" if drawn else "")
        + NOTES
    )


if __name__ == "__main__":
    raise SystemExit(main())
