"""Pretrained models on real songs: throughput against the upstream evaluation path, memory on a
1-hour file, and genre known answers.

Three parts, each written to ``bench/results/pretrained.md``:

1. **Throughput per pretrained model** (the first ``--songs`` shared Jamendo MP3s), seconds of audio
   tagged per second of wall time, three pipelines alternating over rounds (medians reported):

   * **upstream**: what the published evaluation code does, run here with the same network (musetag's
     zoo model holding the published weights, parity-tested against the upstream code in
     ``tests/test_upstream_models.py``). Won et al. 2020 models (minzwon/sota-music-tagging-models):
     ``librosa.load(path, sr=16000)`` (their preprocessing), then ``training/eval.py``'s loop: 16
     chunks of L samples at ``i * ((len - L) // 16)`` stacked into one batch of 16, one forward pass
     (torch STFT mel front end inside the network), sigmoid, mean over the 16; the forward runs with
     autograd enabled, as ``eval.py`` runs it (no ``torch.no_grad()`` there). MTG-Jamendo baseline
     (MTG/mtg-jamendo-dataset ``scripts/baseline``): Essentia ``MonoLoader(sampleRate=12000,
     resampleQuality=4)``, the centred 349,200-sample excerpt, Essentia's official mel-spectrogram
     chain (FrameGenerator 512/256 centred, Hann, Spectrum, MelBands 96 slaneyMel unit_tri power,
     lin2db x 2) computed frame by frame, then the network (batch of one, autograd enabled as the
     upstream solver runs it). Upstream computes the mel of the whole song and crops the centre
     1366 frames; here only the excerpt's mel is computed, which flatters upstream slightly.
     torch uses its default thread count (one per core), as an upstream user gets it.
   * **ours**: ``Tagger.tag_many`` as ``musetag tag`` runs it: its default ``--workers`` (one process
     per core, at most 8; each decodes and computes features) and ``--backend`` (``auto``: onnxruntime
     in the main process on numpy features, batching the workers' windows; ``--backend torch``: each
     worker also runs the torch network on one thread, the main process gets the remaining cores);
   * **ours in one process**: ``tag_many(workers=0)`` with one torch thread per core (the CLI's
     ``--workers 0``).

   Both give the same scores, checked (max |diff| over songs and tags). Won models: librosa decodes
   MP3 with libsndfile and averages the channels; musetag mixes them inside libmpg123. Both resample
   with soxr HQ, so the audio agrees to ~1e-5 and the scores to ~1e-6 (up to a few 1e-3 would still be
   tolerated: a different resampler moves scores by that much). Baseline: musetag decodes like
   Essentia (``decoder="essentia"``) and resamples with libsamplerate's linear converter as Essentia
   does, so the scores agree to ~1e-6.

   fcn and crnn run a 16 x 29 s batch per song whatever its length (464 s of audio through the
   network for a 3-minute song): they are slow on a CPU, so they get ``--heavy-rounds`` rounds.

2. **Peak memory on a 1-hour file** per model family (baseline, fcn, musicnn, crnn): ``musetag tag``
   as a user runs it (default ``--workers``) on a generated 1-hour 44.1 kHz stereo FLAC (a real song
   looped), the process tree sampled every 0.1 s from ``/proc``: the peak of the tree's summed PSS
   (``smaps_rollup``; shared pages divided among the processes sharing them, so the figures add up)
   and each process's peak RSS (``VmHWM`` in ``/proc/PID/status``).

3. **Genre known answers**: ``songs.csv`` gives each of the 10 songs a genre (Hip-Hop, Pop, Folk,
   Reggae, Metal). For each model, the rank (1 = top) of that genre's tag, or of the nearest tag its
   vocabulary has, among all its tags (musetag's scores), and how many songs have it in the top 5 /
   top 10. A tag chosen at random out of 50 lands in the top 10 with probability 0.2.

Prints ``ratio:`` = median over models of ours / upstream throughput. Skips (exit 0) with a message
when ``../shared`` (songs and model mirror) is absent. Default settings take about 10-20 minutes on a
shared 2-core machine (fcn and crnn dominate); ``--songs``, ``--rounds``, ``--heavy-rounds``,
``--models``, ``--minutes``, ``--no-memory`` and ``--no-genre`` make it shorter.

Usage: ``python bench/pretrained.py [--songs 4] [--rounds 3] [--heavy-rounds 1] [--models NAME ...]``.
Uses ``$MUSETAG_HOME`` for the model cache and ``$MUSETAG_MODEL_MIRROR`` (default
``../shared/models``) to pull the models offline.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
MIRROR = Path(os.environ.get("MUSETAG_MODEL_MIRROR", REPO.parent / "shared" / "models"))
RESULTS = REPO / "bench" / "results" / "pretrained.md"

MODELS = ["mtg-jamendo-baseline", "jamendo-musicnn", "mtat-musicnn", "jamendo-fcn", "mtat-fcn", "msd-fcn",
          "jamendo-crnn", "msd-crnn"]
HEAVY = {"fcn", "crnn"}
# the model used for each family's 1-hour memory run
FAMILY_MODEL = {"baseline": "mtg-jamendo-baseline", "fcn": "jamendo-fcn", "musicnn": "jamendo-musicnn",
                "crnn": "jamendo-crnn"}
# songs.csv genre -> the tag standing for it in each vocabulary (None: the vocabulary has none)
GENRE_TAG = {
    "jamendo": {"Hip-Hop": "hiphop", "Pop": "pop", "Folk": "folk", "Reggae": "reggae", "Metal": "metal"},
    "msd": {"Hip-Hop": "Hip-Hop", "Pop": "pop", "Folk": "folk", "Reggae": None, "Metal": "metal"},
    "mtat": {"Hip-Hop": None, "Pop": "pop", "Folk": None, "Reggae": None, "Metal": "metal"},
}
VOCAB_NOTE = {
    "jamendo": "MTG-Jamendo top-50: hiphop, pop, folk, reggae, metal are all tags",
    "msd": "MSD top-50: Hip-Hop, pop, folk, metal (also heavy metal); no reggae tag (n/a)",
    "mtat": "MagnaTagATune top-50: pop, metal; no hip-hop, folk or reggae tag (n/a; its nearest, country, "
            "is not folk)",
}


def family(name: str) -> str:
    return "baseline" if name == "mtg-jamendo-baseline" else name.split("-", 1)[1]


def dataset(name: str) -> str:
    return "baseline" if name == "mtg-jamendo-baseline" else name.split("-", 1)[0]


def default_workers() -> int:
    """``musetag tag``'s default ``--workers`` (the helper when this branch has it, else the CLI default)."""
    try:
        from musetag.commands.tag import default_workers as helper  # newer CLI: also bounded by MemAvailable
    except ImportError:
        return max(1, min(8, os.cpu_count() or 1))
    return int(helper())


# -- the upstream evaluation paths ---------------------------------------------------------------------


def won_upstream(paths, model, length: int, n_chunks: int = 16) -> np.ndarray:
    """librosa.load at 16 kHz, then eval.py's loop: one batch of 16 evenly spaced chunks per track."""
    import librosa
    import torch

    out = []
    for path in paths:
        y, _ = librosa.load(path, sr=16000)
        hop = (len(y) - length) // n_chunks
        x = torch.zeros(n_chunks, length)
        for i in range(n_chunks):
            x[i] = torch.from_numpy(y[i * hop : i * hop + length])
        probs = torch.sigmoid(model(x.unsqueeze(1)))  # autograd on, as eval.py runs it
        out.append(probs.detach().numpy().mean(axis=0))
    return np.stack(out)


def baseline_upstream(paths, model, excerpt: int = 349200) -> np.ndarray:
    """Essentia MonoLoader at 12 kHz, the centred excerpt, Essentia's official mel chain, the network."""
    import essentia.standard as es
    import torch

    window = es.Windowing(type="hann", normalized=False)
    spectrum = es.Spectrum()
    bands = es.MelBands(numberBands=96, sampleRate=12000, lowFrequencyBound=0, highFrequencyBound=6000,
                        warpingFormula="slaneyMel", normalize="unit_tri", weighting="linear", type="power",
                        inputSize=257)
    to_db = es.UnaryOperator(type="lin2db", scale=2)
    out = []
    for path in paths:
        audio = es.MonoLoader(filename=str(path), sampleRate=12000, resampleQuality=4)()
        start = (len(audio) - excerpt) // 2
        audio = audio[start : start + excerpt]
        frames = es.FrameGenerator(audio, frameSize=512, hopSize=256, startFromZero=False)
        mel = np.array([to_db(bands(spectrum(window(f)))) for f in frames], dtype=np.float32).T
        probs = torch.sigmoid(model(torch.from_numpy(mel)[None, None]))
        out.append(probs.detach().numpy()[0])
    return np.stack(out)


def upstream(name: str, paths, tagger) -> np.ndarray:
    if family(name) == "baseline":
        return baseline_upstream(paths, tagger.model)
    return won_upstream(paths, tagger.model, int(tagger.package.segment["samples"]))


def decode_upstream(name: str, paths) -> None:
    """Only the upstream path's decoding and resampling (what its loader hands the mel stage)."""
    if family(name) == "baseline":
        import essentia.standard as es

        for path in paths:
            es.MonoLoader(filename=str(path), sampleRate=12000, resampleQuality=4)()
    else:
        import librosa

        for path in paths:
            librosa.load(path, sr=16000)


def decode_ours(paths, tagger) -> None:
    """Only musetag's decoding and resampling, as the package's front end does it (one process): the
    windows its segment rule needs (the centred excerpt up to its end, musicnn's chunks by seeks), else
    the whole file."""
    for path in paths:
        if tagger.front.decode_windows(path) is None:
            tagger.front.decode(path)


def ours(paths, tagger, workers: int) -> np.ndarray:
    results = list(tagger.tag_many(paths, workers=workers))
    bad = [r.status for r in results if not r.ok]
    if bad:
        raise SystemExit(f"tagging failed: {bad}")
    return np.stack([r.scores_array for r in results])


def audio_seconds(paths) -> float:
    import soundfile as sf

    return float(sum(sf.info(p).duration for p in paths))


# -- memory ------------------------------------------------------------------------------------------


def _proc_field(pid: int, name: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return seen


def measure_tree(argv: list[str], env: dict[str, str]) -> dict:
    """Run ``argv``; sample its process tree's PSS (sum) and each process's peak RSS until it exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_pss, hwm, procs = 0, {}, 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_proc_field(p, "smaps_rollup", "Pss:") for p in pids))
        for p in pids:
            v = _proc_field(p, "status", "VmHWM:")
            if v:
                hwm[p] = max(hwm.get(p, 0), v)
        procs = max(procs, len(pids))
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    main_hwm = hwm.get(proc.pid, 0)
    others = sorted((v for p, v in hwm.items() if p != proc.pid), reverse=True)
    return {"pss_mb": peak_pss / 1024, "main_rss_mb": main_hwm / 1024,
            "worker_rss_mb": (others[0] / 1024) if others else 0.0, "processes": procs,
            "wall_s": time.perf_counter() - start}


def write_long_flac(song: Path, out: Path, minutes: float) -> float:
    """The song looped to ``minutes`` (its own rate and channels), written as 16-bit FLAC in blocks."""
    import soundfile as sf

    data, sr = sf.read(str(song), dtype="float32", always_2d=True)
    total = int(minutes * 60 * sr)
    with sf.SoundFile(str(out), "w", samplerate=sr, channels=data.shape[1], format="FLAC", subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(len(data), total - done)
            f.write(data[:n])
            done += n
    return total / sr


# -- genre ranks ---------------------------------------------------------------------------------------


def read_genres(root: Path) -> dict[str, str]:
    with open(root / "songs.csv", newline="", encoding="utf-8") as f:
        return {Path(r["path"]).name: r["Genre"].strip() for r in csv.DictReader(f)}


def genre_rank(scores: np.ndarray, tags: list[str], tag: str | None) -> int | None:
    if tag is None:
        return None
    order = np.argsort(-scores, kind="stable")
    return int(np.nonzero(order == tags.index(tag))[0][0]) + 1


def verdict(top10: int, n: int) -> str:
    if n == 0:
        return "cannot say (no genre tag for these songs)"
    if top10 >= max(1, round(2 * n / 3)):
        return "agrees with the labels"
    if top10 * 3 >= n:
        return "partly agrees"
    return "does not agree"


# -- main ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS, help="catalogue names (default: all eight)")
    parser.add_argument("--songs", type=int, default=4, help="songs for the throughput part (4: two per worker on 2 cores)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (baseline, musicnn)")
    parser.add_argument("--heavy-rounds", type=int, default=1, help="alternating rounds for fcn and crnn")
    parser.add_argument("--workers", type=int, default=None, help="workers for ours (default: musetag tag's)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                        help="backend for ours (default: musetag tag's, auto)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the generated file (memory)")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1-hour memory part")
    parser.add_argument("--no-genre", action="store_true", help="skip the genre table")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/pretrained.md")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")

    songs_dir = SHARED / "jamendo-songs"
    all_songs = sorted((songs_dir / "mp3").glob("*.mp3"))
    if not all_songs or not MIRROR.is_dir():
        print(f"skipped: the shared songs ({songs_dir}) or the model mirror ({MIRROR}) are not available")
        return 0
    os.environ.setdefault("MUSETAG_MODEL_MIRROR", str(MIRROR))
    home_tmp = None
    if not os.environ.get("MUSETAG_HOME"):
        home_tmp = tempfile.TemporaryDirectory(prefix="musetag-bench-home-")
        os.environ["MUSETAG_HOME"] = home_tmp.name

    import torch

    from musetag.inference.hub import pull
    from musetag.inference import Tagger

    t_script = time.perf_counter()
    cores = os.cpu_count() or 1
    workers = default_workers() if args.workers is None else args.workers
    paths = [str(p) for p in all_songs[: args.songs]]
    seconds = audio_seconds(paths)
    load0 = os.getloadavg()[0]
    torch.set_num_threads(cores)
    # one-off initialisation of every library involved (imports, Essentia's factory, librosa's first
    # load, oneDNN), on a short real clip, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        clip = Path(tmp) / "warm.wav"
        data, sr = sf.read(paths[0], dtype="float32")
        sf.write(clip, data[: 40 * sr], sr)
        warm = Tagger.from_package(pull("jamendo-musicnn"))
        won_upstream([str(clip)], warm.model, 48000)
        ours([str(clip)], warm, 0)
        baseline_upstream([str(clip)], Tagger.from_package(pull("mtg-jamendo-baseline")).model)

    rows, ratios, diffs, our_scores = [], {}, {}, {}
    for name in args.models:
        # the upstream paths run the same torch network; ours runs as musetag tag does (--backend auto:
        # onnxruntime with numpy features for the catalogue models)
        reference = Tagger.from_package(pull(name))
        tagger = Tagger.from_package(pull(name), backend=args.backend)
        rounds = args.heavy_rounds if family(name) in HEAVY else args.rounds
        times: dict[str, list[float]] = {"upstream": [], "ours": [], "inproc": [], "dec_up": [], "dec_ours": []}
        for r in range(rounds):
            # rotate the order each round: a noisy neighbour then slows each pipeline in turn
            order = ["upstream", "ours", "inproc", "dec_up", "dec_ours"]
            order = order[r % 5:] + order[: r % 5]
            for which in order:
                start = time.perf_counter()
                if which == "upstream":
                    torch.set_num_threads(cores)
                    ref = upstream(name, paths, reference)
                elif which == "ours":
                    torch.set_num_threads(max(1, cores - workers))
                    got = ours(paths, tagger, workers)
                elif which == "inproc":
                    torch.set_num_threads(cores)
                    inproc = ours(paths, tagger, 0)
                elif which == "dec_up":
                    decode_upstream(name, paths)
                else:
                    decode_ours(paths, tagger)
                times[which].append(time.perf_counter() - start)
        torch.set_num_threads(cores)
        med = {k: float(np.median(v)) for k, v in times.items()}
        speed = {k: seconds / v for k, v in med.items()}
        diff = float(max(np.abs(got - ref).max(), np.abs(inproc - ref).max()))
        ratios[name], diffs[name] = speed["ours"] / speed["upstream"], diff
        our_scores[name] = {Path(p).name: s for p, s in zip(paths, got)}
        rows.append((name, rounds, speed, med, diff))
        print(f"{name}: upstream {speed['upstream']:.1f}, ours ({workers} workers) {speed['ours']:.1f}, "
              f"in-process {speed['inproc']:.1f} s of audio/s; ours/upstream {ratios[name]:.2f}; decode only: upstream "
              f"{speed['dec_up']:.0f}, ours {speed['dec_ours']:.0f} s of audio/s; "
              f"max |diff| {diff:.1e} ({rounds} rounds)", flush=True)
    load1 = os.getloadavg()[0]

    mem_rows = []
    if not args.no_memory:
        chosen = {}
        for fam, model in FAMILY_MODEL.items():
            same = [m for m in args.models if family(m) == fam]
            if same:
                chosen[fam] = model if model in same else same[0]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
        with tempfile.TemporaryDirectory() as tmp:
            long = Path(tmp) / "hour.flac"
            length = write_long_flac(all_songs[0], long, args.minutes)
            for fam, model in chosen.items():
                m = measure_tree([sys.executable, "-m", "musetag", "tag", model, str(long), "--no-progress",
                                  "--out", str(Path(tmp) / f"{fam}.jsonl")], env)
                mem_rows.append((fam, model, m))
                print(f"memory {fam} ({model}), {length / 60:.0f} min FLAC: tree peak PSS {m['pss_mb']:.0f} MB, "
                      f"main peak RSS {m['main_rss_mb']:.0f} MB, largest worker {m['worker_rss_mb']:.0f} MB, "
                      f"{m['processes']} processes, {m['wall_s']:.1f} s", flush=True)

    genres = read_genres(songs_dir)
    genre_rows, genre_summary = [], []
    if not args.no_genre:
        names = [n for n in args.models if family(n) != "baseline"]
        rest = [str(p) for p in all_songs if p.name not in set(Path(x).name for x in paths)]
        ranks: dict[str, dict[str, int | None]] = {}
        for name in names:
            tagger = Tagger.from_package(pull(name), backend=args.backend)
            scores = dict(our_scores.get(name, {}))
            todo = [p for p in rest if Path(p).name not in scores]
            if todo:
                torch.set_num_threads(max(1, cores - workers))
                scores.update({Path(p).name: s for p, s in zip(todo, ours(todo, tagger, workers))})
                torch.set_num_threads(cores)
            vocab = GENRE_TAG[dataset(name)]
            ranks[name] = {song.name: genre_rank(scores[song.name], tagger.tags, vocab[genres[song.name]])
                           for song in all_songs}
            with_tag = [r for r in ranks[name].values() if r is not None]
            top5, top10 = sum(r <= 5 for r in with_tag), sum(r <= 10 for r in with_tag)
            genre_summary.append((name, len(with_tag), top5, top10, verdict(top10, len(with_tag))))
            print(f"genre {name}: {top5} of {len(with_tag)} songs with the genre in the top 5, {top10} in the top 10",
                  flush=True)
        for song in all_songs:
            genre_rows.append((song, genres[song.name], [ranks[n][song.name] for n in names]))

    ratio = float(np.median(list(ratios.values())))
    worst = max(diffs.values())
    elapsed = time.perf_counter() - t_script
    print(f"scores max |ours - upstream| over all models: {worst:.1e} (tolerated <= 5e-3)")
    print(f"ratio: {ratio:.2f} (ours / upstream evaluation path, seconds of audio per second, median over "
          f"{len(ratios)} models)")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(render(args, rows, ratio, worst, workers, seconds, paths, cores, load0, load1,
                                  mem_rows, genre_rows, genre_summary, elapsed))
    if home_tmp is not None:
        home_tmp.cleanup()
    return 0 if worst <= 5e-3 else 1


def render(args, rows, ratio, worst, workers, seconds, paths, cores, load0, load1, mem_rows, genre_rows,
           genre_summary, elapsed) -> str:
    import torch

    out = [
        "## Pretrained models: throughput, memory and known answers (`bench/pretrained.py`)\n",
        f"Machine: {cores} cores shared with other jobs (load average {load0:.1f} at the start, {load1:.1f} after "
        f"the throughput part), torch {torch.__version__}. Script wall time {elapsed / 60:.1f} min. Command: "
        f"`python bench/pretrained.py --songs {args.songs} --rounds {args.rounds} --heavy-rounds "
        f"{args.heavy_rounds} --backend {args.backend}"
        f"{' --models ' + ' '.join(args.models) if args.models != MODELS else ''}`.\n",
        "### Throughput against the upstream evaluation path\n",
        f"The first {len(paths)} shared Jamendo MP3 songs ({seconds:.0f} s of audio); pipelines alternate over "
        "rounds (order rotated each round), medians reported. **upstream** = the published evaluation path run "
        "with the same network (Won et al.: `librosa.load(sr=16000)` then `eval.py`'s batch of 16 evenly spaced "
        "chunks, one forward with autograd on as `eval.py` runs it; baseline: Essentia `MonoLoader` 12 kHz + "
        "Essentia's official mel chain of the centred 29.1 s excerpt + the network), torch at its default "
        f"{cores} threads. **ours** = `Tagger.tag_many` with `musetag tag`'s default `--workers` ({workers}) "
        f"and `--backend {args.backend}` (auto: onnxruntime in the main process batching the windows that the "
        "workers decode and turn into numpy features; torch: each worker also runs the network on one thread). "
        "**in-process** = "
        f"`workers=0`, {cores} torch threads. Throughput is seconds of audio tagged per wall-clock second. "
        "The decode columns time only the decoding and resampling of each path, in one process (upstream: "
        "`librosa.load(sr=16000)`, or Essentia `MonoLoader` at 12 kHz for the baseline; ours: the package's "
        "front end, libmpg123 + soxr HQ for the Won models, FFmpeg's fixed-point MP3 decoder through PyAV + "
        "libsamplerate linear for the baseline, as Essentia decodes, from the song's start to the end of the "
        "centred excerpt only).\n",
        "| model | rounds | upstream | ours | in-process | ours / upstream | decode only: upstream | "
        "decode only: ours | scores max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rounds, speed, _med, diff in rows:
        out.append(f"| `{name}` | {rounds} | {speed['upstream']:.1f} | **{speed['ours']:.1f}** | "
                   f"{speed['inproc']:.1f} | **{speed['ours'] / speed['upstream']:.2f}x** | {speed['dec_up']:.0f} | "
                   f"{speed['dec_ours']:.0f} | {diff:.1e} |")
    fam: dict[str, list[float]] = {}
    for name, _rounds, speed, _med, _diff in rows:
        fam.setdefault(family(name), []).append(speed["ours"] / speed["upstream"])
    out += [
        "",
        f"- median ours / upstream over the models: **{ratio:.2f}x**; per family (median of its models, which "
        "run the same network and differ only by noise): "
        + ", ".join(f"{f} **{np.median(v):.2f}x**" for f, v in fam.items())
        + f". Scores agree to **{worst:.1e}** at worst "
        "(tolerance 5e-3 for a different resampler; both sides resample with soxr HQ for the Won models and "
        "with libsamplerate's linear converter at Essentia's single-precision ratio for the baseline, so the "
        "differences are float rounding and the decoders' channel mixing).",
        "- Where the time goes: fcn and crnn put a 16 x 29 s batch (464 s of audio) through the network for every "
        "song, whatever its length, and the network is most of the cost on a CPU. Both paths run the same "
        "network on the same batch; what ours saves there is the network runtime (onnxruntime on the exported "
        "graph with `--backend auto`, against eager PyTorch with autograd on as `eval.py` runs it), the decoding "
        "(the 16 chunks are decoded by seeks, see the decode columns) and what two worker processes gain over "
        "one; this script does not separate them. musicnn (16 x 3 s) and the baseline (one 29.1 s excerpt) "
        "spend a larger share decoding and resampling. For the baseline, musetag decodes MP3 with the same "
        "FFmpeg fixed-point decoder as Essentia (PyAV; each frame's planes viewed, then converted and mixed once "
        "per block) and stops at the end of the centred excerpt, about 60 % of a song: that decoder cannot seek "
        "exactly (it carries its rounding remainder through the whole stream, so samples after a seek are one "
        "LSB off about half the time), so the start of the song is always decoded. The upstream path decodes the "
        "whole song; the rest of both paths (12 kHz mel of 29.1 s, one forward pass) is small. That bounds the "
        "baseline's ratio near (1 / 0.6) x (Essentia's decode cost / ours per decoded second) x what two "
        "processes gain over one: about 1.7 x 0.8 x 1.5-1.7 on this machine, short of the 3x the issue asked.",
        "- On a machine shared with other jobs the wall times are noisy (the same network on other weights "
        "moves by tens of per cent between rows); the ratios, measured in the same run with alternating "
        "pipelines, are the figures to compare.\n",
    ]
    if mem_rows:
        out += [
            f"### Peak memory on a {args.minutes:g}-minute file\n",
            f"`musetag tag MODEL hour.flac` at the default `--workers` ({workers}) on a generated "
            f"{args.minutes:.0f}-minute FLAC (the first song looped, 44.1 kHz stereo, 16-bit), the process tree "
            "sampled every 0.1 s: peak of the summed PSS (`/proc/PID/smaps_rollup`) and peak RSS (`VmHWM`) of "
            "the main process and of the largest worker.\n",
            "| family | model | tree peak PSS | main process peak RSS | largest worker peak RSS | processes | "
            "wall time |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for fam, model, m in mem_rows:
            worker = f"{m['worker_rss_mb']:.0f} MB" if m["worker_rss_mb"] else "-"
            out.append(f"| {fam} | `{model}` | **{m['pss_mb']:.0f} MB** | {m['main_rss_mb']:.0f} MB | {worker} | "
                       f"{m['processes']} | {m['wall_s']:.0f} s |")
        out += ["", "- A 1-hour 16 kHz mono float32 waveform alone is 230 MB, a 44.1 kHz stereo one 1.27 GB: "
                "files longer than `--stream-minutes` (10) are decoded in blocks and only the chunks the segment "
                "rule needs are kept. A FLAC seeks exactly, so these models decode only their windows of it (the "
                "baseline's centred excerpt, the Won models' 16 chunks): seconds, not minutes, for an hour. A file "
                "that must be decoded whole (the 3-hour MP3 of `tests/test_features_excerpt.py` on the baseline's "
                "exact decoder) streams through in blocks under 1 GB peak RSS.\n"]
    if genre_rows:
        names = [s[0] for s in genre_summary]
        out += [
            "### Genre known answers (`songs.csv` genres)\n",
            "Rank (1 = top) of the song's genre tag among each model's tags, from musetag's scores. "
            + "; ".join(VOCAB_NOTE[d] for d in ("jamendo", "msd", "mtat") if any(dataset(n) == d for n in names))
            + ". `mtg-jamendo-baseline` has only the 56 mood/theme tags: no genre to rank (not in the table).\n",
            "| song | genre | " + " | ".join(f"`{n}`" for n in names) + " |",
            "|---|---|" + "---:|" * len(names),
        ]
        for song, genre, ranks in genre_rows:
            cells = ["n/a" if r is None else (f"**{r}**" if r <= 5 else str(r)) for r in ranks]
            out.append(f"| {song.stem} | {genre} | " + " | ".join(cells) + " |")
        out += ["", "| model | songs with a genre tag | genre in top 5 | genre in top 10 | verdict |",
                "|---|---:|---:|---:|---|"]
        for name, n, top5, top10, v in genre_summary:
            few = f" (only {n} songs have a tag)" if 0 < n < 5 else ""
            out.append(f"| `{name}` | {n} | {top5} of {n} | {top10} of {n} | {v}{few} |")
        agree = [n for n, _, _, _, v in genre_summary if v == "agrees with the labels"]
        partly = [n for n, _, _, _, v in genre_summary if v == "partly agrees"]
        disagree = [n for n, _, _, _, v in genre_summary if v == "does not agree"]
        out += [
            "",
            "Verdict rule: agrees when at least two thirds of the songs that have a genre tag rank it in the top "
            "10, partly when at least a third do (a random ranking puts it there for a fifth), otherwise does "
            "not agree. "
            + (f"Agree with the labels: {', '.join(f'`{n}`' for n in agree)}. " if agree else "No model agrees. ")
            + (f"Partly: {', '.join(f'`{n}`' for n in partly)}. " if partly else "")
            + (f"Do not agree: {', '.join(f'`{n}`' for n in disagree)}. " if disagree else "")
            + f"{len(genre_rows)} songs (one genre label each, from Jamendo) are a sanity check, not an evaluation.\n",
        ]
        missed = []
        for song, genre, ranks in genre_rows:
            known = [r for r in ranks if r is not None]
            outside = sum(r > 10 for r in known)
            if known and outside * 2 > len(known):
                missed.append(f"{song.stem} ({genre}: outside the top 10 for {outside} of {len(known)} models)")
        if missed:
            out.append("Songs most models miss: " + "; ".join(missed) + ".\n")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
