"""``--engine ray`` (musetag.tag.ray_engine) on a real local Ray cluster.

The cluster is started the way users start one, ``ray start --head`` on 127.0.0.1 in a subprocess,
and joined with ``--address HOST:PORT``. It runs with ``--block`` and is stopped by ending that
process (and its process group) by id: ``ray stop`` would end every Ray process of this user on the
machine, other people's clusters included.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'musetag[ray]')")
pytest.importorskip("ray.data")

import musetag  # noqa: E402
from musetag.cli import main  # noqa: E402
from musetag.tag import ray_engine  # noqa: E402
from musetag.tag.writers import read_results  # noqa: E402
from test_package import TAGS, make_package  # noqa: E402

SR = 16000
CLUSTER_ROOT: list[int] = []  # the pid of this module's `ray start`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


@pytest.fixture(scope="module")
def cluster():
    """``ray start --head --num-cpus=2`` on 127.0.0.1; yields its address; the driver (this process) is
    connected for the module."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="mtray-")  # short: Ray's socket paths must fit in 107 bytes
    src = str(Path(musetag.__file__).resolve().parents[1])
    # token authentication with a token of this cluster (never the user's ~/.ray/auth_token)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0", **auth}
    mp = pytest.MonkeyPatch()
    for k, v in auth.items():
        mp.setenv(k, v)
    try:  # Ray read RAY_AUTH_MODE when it was imported: have this process see token mode now
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # noqa: BLE001 - older Ray: no token authentication
        pass
    proc = subprocess.Popen(
        [*_ray_cli(), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}", "--object-store-memory=150000000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("ray start did not open its port within 90 s")
                time.sleep(0.5)
        ray.init(address=address, log_to_driver=False)
        CLUSTER_ROOT.append(proc.pid)
        yield address
    finally:
        ray.shutdown()
        mp.undo()
        # the group `ray start` leads (its GCS, raylet and workers), by the group's id
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64)


def write_clips(folder: Path, n: int, seconds: float = 2.0, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + n):
        t = np.arange(int(seconds * SR)) / SR
        audio = 0.3 * np.sin(2 * np.pi * (110 * (i % 12 + 1)) * t) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, audio.astype(np.float32), SR)
        paths.append(path)
    return paths


from test_tag_cli import rows_by_path as by_path  # noqa: E402 - one row per file, duplicates fail


def test_rows_equal_the_local_path_and_bad_files_are_error_rows(cluster, package, tmp_path, capfd):
    folder = tmp_path / "music"
    write_clips(folder, 5)
    write_clips(folder, 1, seconds=0.3, start=5)  # shorter than the window: a warning
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("these are my notes, not a song\n")
    (folder / "truncated.wav").write_bytes((folder / "clip000.wav").read_bytes()[:30])
    local, remote = tmp_path / "local.csv", tmp_path / "ray.parquet"  # parquet: through a partial JSONL
    assert main(["tag", str(package), str(folder), "--out", str(local), "--workers", "0", "--no-progress"]) == 3
    assert main(["tag", str(package), str(folder), "--out", str(remote), "--engine", "ray", "--address", cluster,
                 "--no-progress"]) == 3
    noise = [ln for ln in capfd.readouterr().err.splitlines()
             if any(word in ln for word in (" INFO ", " WARNING ", "(pid=", "deprecated"))]
    assert not noise, noise[:3]  # Ray's INFO/WARNING lines, workers' logs and Ray's deprecations only with -v
    from musetag.tag.ray_parquet import partial_path, read_parquet_rows

    assert not partial_path(remote).exists()
    a, b = by_path(read_results(local)), by_path(read_parquet_rows(remote, TAGS))
    assert set(a) == set(b) and len(a) == 9
    for path, ra in a.items():
        rb = b[path]
        assert rb["status"] == ra["status"]
        assert rb["decisions"] == ra["decisions"] and rb["warnings"] == ra["warnings"]
        assert [t["tag"] for t in rb["top_tags"]] == [t["tag"] for t in ra["top_tags"]]
        if ra["status"] == "ok":
            assert rb["duration"] == pytest.approx(ra["duration"], abs=1e-3)
            assert list(rb["scores"]) == TAGS
            np.testing.assert_allclose([rb["scores"][t] for t in TAGS], [ra["scores"][t] for t in TAGS], atol=1e-5)
        else:
            assert rb["scores"] == {} and rb["top_tags"] == []
    bad = {Path(p).name for p, r in b.items() if r["status"] != "ok"}
    assert bad == {"empty.wav", "notes.mp3", "truncated.wav"}
    assert any("too_short" in w for w in b[str(folder / "clip005.wav")]["warnings"])


def test_the_command_prints_nothing_of_rays_own(cluster, package, tmp_path):
    """`musetag tag ... --engine ray` in a new process, as users start it: its core worker printed an "E"
    line about Ray Data's actor ("constructor arguments in the object store and max_restarts > 0")."""
    folder = tmp_path / "music"
    write_clips(folder, 2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(musetag.__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_BACKEND_LOG_LEVEL", None)
    out = subprocess.run([sys.executable, "-m", "musetag", "tag", str(package), str(folder), "--out",
                          str(tmp_path / "r.csv"), "--engine", "ray", "--address", cluster, "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines() == [next(ln for ln in out.stderr.splitlines() if "2 ok" in ln)], out.stderr


def test_resume_skips_files_already_written(cluster, package, tmp_path):
    folder = tmp_path / "music"
    write_clips(folder, 4)
    out = tmp_path / "tags.csv"
    first = ray_engine.run_tag(package, [folder], out, address=cluster)
    assert (first.ok, first.skipped) == (4, 0)
    write_clips(folder, 2, start=4)
    second = ray_engine.run_tag(package, [folder], out, address=cluster)
    assert (second.ok, second.skipped, second.failed) == (2, 4, 0)
    assert len(by_path(read_results(out))) == 6
    third = ray_engine.run_tag(package, [folder], out, address=cluster)
    assert (third.ok, third.skipped) == (0, 6)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    try:
        while pid > 1:
            if pid == root:
                return True
            pid = _parent(pid)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _actor_pids() -> list[int]:
    """Processes of this module's cluster whose title Ray set to the network actor's
    (``ray::MapWorker(MapBatches(_Scorer))``); never another cluster's on this machine."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and "_Scorer" in cmd and _descends_from(int(entry), CLUSTER_ROOT[-1]):
            pids.append(int(entry))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor's process in /proc")
def test_killed_actor_is_restarted_and_every_file_is_written_once(cluster, package, tmp_path):
    folder = tmp_path / "music"
    files = write_clips(folder, 24, seconds=3.0)
    out = tmp_path / "tags.jsonl"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _actor_pids()
            rows = out.read_text().count("\n") if out.exists() else 0
            if pids and rows >= 1:  # the actor has scored files: kill it in the middle of the run
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = ray_engine.run_tag(package, [folder], out, address=cluster, files_per_batch=1)
    thread.join(5)
    assert killed, "the actor was not seen in time to be killed"
    rows = by_path(read_results(out))  # by_path fails on a duplicate
    assert set(rows) == {str(f) for f in files}
    assert all(r["status"] == "ok" for r in rows.values())
    assert summary.ok == 24 and summary.failed == 0


def test_embed_equals_the_local_embeddings(cluster, package, tmp_path):
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files

    folder = tmp_path / "music"
    write_clips(folder, 3)
    (folder / "empty.wav").write_bytes(b"")
    embed_files(package, [folder], tmp_path / "local.npy", progress=False)
    assert main(["embed", str(package), str(folder), "--out", str(tmp_path / "ray.npy"), "--engine", "ray",
                 "--address", cluster, "--no-progress"]) == 3
    a, b = read_embeddings(tmp_path / "local.npy"), read_embeddings(tmp_path / "ray.npy")
    assert a.paths == b.paths and len(a.paths) == 3
    np.testing.assert_allclose(b.vectors, a.vectors, atol=1e-5)
    assert "empty.wav" in (tmp_path / "ray.errors.csv").read_text()


def test_embed_cuts_the_windows_of_the_local_embeddings(cluster, tmp_path):
    """Overlapping windows: `musetag embed` cuts them to overlap by at most half (windows=fit); the Ray engine cut
    the package's own windows, so the two engines gave different vectors for one model, and a Ray run resumed an
    output made with the other rule."""
    from musetag.errors import ConfigError
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files

    overlapping = make_package(tmp_path / "pkg", frames=64, hop=8)
    folder = tmp_path / "music"
    write_clips(folder, 2, seconds=3.0)
    embed_files(overlapping, [folder], tmp_path / "local.npy", progress=False)
    embed_files(overlapping, [folder], tmp_path / "upstream.npy", progress=False, windows="upstream")
    report = ray_engine.run_embed(overlapping, folder, tmp_path / "ray.npy", address=cluster)
    assert report.ok == 2
    local, upstream, got = (read_embeddings(tmp_path / f) for f in ("local.npy", "upstream.npy", "ray.npy"))
    assert np.abs(local.vectors - upstream.vectors).max() > 1e-3  # the rule matters for this package
    np.testing.assert_allclose(got.vectors, local.vectors, atol=1e-5)
    assert got.meta["windows"] == "fit"
    with pytest.raises(ConfigError, match="windows=upstream, not fit"):
        ray_engine.run_embed(overlapping, folder, tmp_path / "upstream.npy", address=cluster)


def test_dataset_api_and_manifest(cluster, package, tmp_path):
    files = write_clips(tmp_path / "music", 3)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path\n" + "".join(f"music/{f.name}\n" for f in files) + "music/missing.wav\n")
    ds = ray_engine.tag_dataset(package, [manifest], address=cluster)
    rows = by_path(ray_engine.result_row(r) for r in ds.take_all())
    assert set(rows) == {str(f) for f in files} | {str(tmp_path / "music" / "missing.wav")}
    assert "not found" in rows[str(tmp_path / "music" / "missing.wav")]["status"]
    # a user's own Dataset of paths composes
    ds = ray_engine.tag_dataset(package, ray.data.from_items([{"path": str(files[0])}]))
    assert [r["status"] for r in ds.take_all()] == ["ok"]


def test_gpu_actors_on_a_cluster_without_gpus_are_refused_at_once(cluster, package, tmp_path):
    # this CPU cluster has no GPU: Ray would leave the actor pending forever; musetag says so instead
    folder = tmp_path / "music"
    write_clips(folder, 1)
    from musetag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--gpus-per-worker 1: the Ray cluster has 0 GPU\(s\)"):
        ray_engine.tag_dataset(package, [folder], address=cluster, gpus_per_actor=1.0)


def _parts(folder: Path, n: int) -> tuple[int, int]:
    """(an empty part, a non-empty part) of ``--shard I/n`` over ``folder``, 1-based."""
    from musetag.tag.shard import collect_shard_files

    sizes = [len(collect_shard_files([folder], f"{i}/{n}")) for i in range(1, n + 1)]
    return sizes.index(0) + 1, next(i for i, s in enumerate(sizes, 1) if s)


def test_an_empty_shard_part_exits_0_before_ray_is_asked(cluster, package, tmp_path, capfd):
    """`--engine ray --shard I/N` as without Ray: a part that none of the files falls in has succeeded; it says
    so and exits 0 (it exited 4, "nothing tagged", after starting a run, and wrote an empty results file);
    the manifest's files count. A part with files tags exactly those."""
    folder = tmp_path / "music"
    clips = write_clips(folder, 3)
    manifest = tmp_path / "list.txt"
    manifest.write_text("".join(f"{p}\n" for p in clips))
    empty, full = _parts(folder, 8)
    capfd.readouterr()
    for command, target in (("tag", "tags.csv"), ("embed", "emb.npy")):
        for source in (folder, manifest):
            if source == manifest:  # a manifest's files are keyed by their paths: its own empty part
                from musetag.tag.shard import collect_shard_files

                part = next(i for i in range(1, 9) if not collect_shard_files([str(p) for p in clips], f"{i}/8"))
            else:
                part = empty
            assert main([command, str(package), str(source), "--out", str(tmp_path / target), "--engine", "ray",
                         "--address", cluster, "--shard", f"{part}/8", "--no-progress"]) == 0
            assert "none of the 3 audio file(s) falls in shard" in capfd.readouterr().err
    assert not list(tmp_path.glob("tags*")) and not list(tmp_path.glob("emb*"))
    out = tmp_path / "tags.csv"
    assert main(["tag", str(package), str(folder), "--out", str(out), "--engine", "ray", "--address", cluster,
                 "--shard", f"{full}/8", "--no-progress"]) == 0
    from musetag.tag.shard import collect_shard_files

    assert set(by_path(read_results(out))) == set(collect_shard_files([folder], f"{full}/8"))
