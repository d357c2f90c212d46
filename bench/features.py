"""Benchmark: decode + resample + log-mel of the shared Jamendo songs, musetag vs the research pipeline.

The peer is what research repositories do: ``librosa.load(path, sr=...)`` then
``librosa.feature.melspectrogram`` and ``librosa.power_to_db``, one file after the other, with the
preset's settings (same window, mel filterbank and dB scale, so both must give the same features;
for ``jamendo96`` the peer resamples with ``res_type="linear"``, libsamplerate's linear converter
that Essentia used for the official features, when the ``samplerate`` package is installed, and
otherwise with librosa's default soxr, in which case only the framing/mel/dB stages are compared).

Ours: :func:`musetag.features.iter_extract` (libsndfile decode, fast downmix, resampling, torch
STFT + mel) over the same files with ``--workers`` threads (default: all cores).

Timing: both pipelines run ``--repeats`` times, interleaved, and the fastest run of each counts (the
machine is shared; the minimum is the least disturbed). Prints seconds of audio per second for
each and ``ratio: X`` (ours / librosa), and writes the markdown section to
``bench/results/features.md``.

    .venv/bin/python bench/features.py [--preset jamendo96] [--workers N] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SONGS = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data")) / "jamendo-songs" / "mp3"


def librosa_pipeline(path: Path, cfg, res_type: str) -> np.ndarray:
    import librosa

    from musetag.features import analysis_window

    y, sr = librosa.load(path, sr=cfg.sample_rate, mono=cfg.mono, res_type=res_type)
    if not cfg.mono and y.ndim == 1:
        y = np.stack([y, y])
    if cfg.trim_silence:
        y, _ = librosa.effects.trim(y, top_db=cfg.trim_top_db)
    if cfg.pad_end:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, (-y.shape[-1]) % cfg.hop_length)])
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window=analysis_window(cfg),
        center=cfg.center,
        pad_mode=cfg.pad_mode,
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.htk,
        norm=cfg.mel_norm,
    )
    db = (cfg.db_multiplier / 10.0) * librosa.power_to_db(mel, ref=1.0, amin=cfg.db_amin, top_db=None)
    return db[..., cfg.drop_first_frames :]


def compare(ours: np.ndarray, ref: np.ndarray, cfg) -> tuple[bool, str]:
    """Same shape, and equal to 1e-4 relative (1e-3 dB absolute near 0 dB) within 70 dB of the peak power."""
    if ours.shape != ref.shape:
        return False, f"shapes differ: {ours.shape} vs {ref.shape}"
    power_db = ref / (cfg.db_multiplier / 10.0)  # 10 log10(power)
    audible = power_db > power_db.max() - 70
    close = np.isclose(ours[audible], ref[audible], rtol=1e-4, atol=1e-3)
    worst = float(np.max(np.abs(ours[audible] - ref[audible]))) if audible.any() else 0.0
    return bool(close.all()), f"max |diff| {worst:.2e} dB over {audible.mean():.1%} of the values"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="jamendo96")
    parser.add_argument("--songs", type=Path, default=DEFAULT_SONGS, help="directory of audio files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "features.md")
    args = parser.parse_args(argv)

    import librosa
    import soundfile as sf
    import torch

    from musetag.features import get_preset, iter_extract

    cfg = get_preset(args.preset)
    if cfg.kind != "mel":
        print(f"preset {args.preset} is not a mel preset; nothing to compare", file=sys.stderr)
        return 2
    files = sorted(p for p in args.songs.glob("*") if p.suffix.lower() in (".mp3", ".wav", ".flac", ".ogg"))
    if not files:
        print(f"no audio files in {args.songs} (the shared data is not available here)", file=sys.stderr)
        return 2
    seconds = sum(sf.info(str(f)).duration for f in files)

    res_type = "soxr_hq"
    exact_resampler = True
    if cfg.resample_method == "linear":
        try:
            import samplerate  # noqa: F401  (librosa's res_type="linear" backend: libsamplerate)

            res_type = "linear"
        except ImportError:
            exact_resampler = False
    elif cfg.resample_method != "soxr_hq":
        res_type = cfg.resample_method

    # warm-up (imports, filterbank construction, first torch call) outside the timed runs
    list(iter_extract(files[:1], cfg))
    librosa_pipeline(files[0], cfg, res_type)

    ours_times, peer_times = [], []
    ours_cpu, peer_cpu = [], []
    ours_out: list[np.ndarray] = []
    peer_out: list[np.ndarray] = []
    torch_threads = torch.get_num_threads()
    for rep in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        results = list(iter_extract(files, cfg, workers=args.workers))
        ours_times.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
        errors = [e for _, _, e in results if e]
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1
        ours_out = [f for _, f, _ in results]

        start, cpu = time.perf_counter(), time.process_time()
        peer_out = [librosa_pipeline(f, cfg, res_type) for f in files]
        peer_times.append(time.perf_counter() - start)
        peer_cpu.append(time.process_time() - cpu)
        print(f"run {rep + 1}: ours {ours_times[-1]:.2f} s, librosa {peer_times[-1]:.2f} s", flush=True)

    equal, details = True, []
    if exact_resampler:
        for f, a, b in zip(files, ours_out, peer_out):
            ok, msg = compare(a, b, cfg)
            equal &= ok
            details.append(f"{'ok  ' if ok else 'DIFF'} {f.name}: {msg}")
    else:
        # different resamplers: compare the front ends on our decoded + resampled audio
        from musetag.audio import load_audio
        from musetag.features import compute_features

        for f in files:
            y, sr = load_audio(f, sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method)
            a = compute_features(y, sr, cfg)
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                sf.write(tmp.name, y.T if y.ndim == 2 else y, sr, subtype="FLOAT")
                b = librosa_pipeline(Path(tmp.name), cfg, res_type)
            ok, msg = compare(a, b, cfg)
            equal &= ok
            details.append(f"{'ok  ' if ok else 'DIFF'} {f.name}: {msg} (front end only)")

    ours_best, peer_best = min(ours_times), min(peer_times)
    ours_speed, peer_speed = seconds / ours_best, seconds / peer_best
    ratio = ours_speed / peer_speed
    print("\n".join(details))
    print(f"features equal: {'yes' if equal else 'NO'}")
    print(f"audio: {len(files)} files, {seconds:.1f} s; preset {cfg.name}; workers {args.workers}")
    print(f"ours:    {ours_speed:8.1f} s of audio per second ({ours_best:.2f} s)")
    print(f"librosa: {peer_speed:8.1f} s of audio per second ({peer_best:.2f} s, res_type={res_type})")
    cpu_ratio = min(peer_cpu) / min(ours_cpu)
    print(f"cpu seconds per audio hour: ours {3600 * min(ours_cpu) / seconds:.1f}, librosa {3600 * min(peer_cpu) / seconds:.1f} "
          f"(cpu ratio {cpu_ratio:.2f}: the work saved, whatever the machine's load)")
    print(f"ratio: {ratio:.2f}")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    section = f"""## Features: decode + resample + log-mel (`bench/features.py`)

Preset `{cfg.name}` ({cfg.describe()}) on {len(files)} real Jamendo songs ({seconds:.0f} s of MP3 audio).
Peer: `librosa.load(path, sr={cfg.sample_rate}, res_type="{res_type}")` + `librosa.feature.melspectrogram` +
`librosa.power_to_db`, file after file. Ours: `musetag.features.iter_extract(files, "{cfg.name}", workers={args.workers})`.
Fastest of {args.repeats} interleaved runs each; {os.cpu_count()} cores ({platform.machine()}), load average {load:.1f}
at the end, torch {torch.__version__} ({torch_threads} threads), librosa {librosa.__version__}.

| pipeline | seconds of audio per second | wall time |
|---|---:|---:|
| musetag | {ours_speed:.1f} | {ours_best:.2f} s |
| librosa | {peer_speed:.1f} | {peer_best:.2f} s |

CPU time (all threads; insensitive to other processes on a shared machine): ours
{3600 * min(ours_cpu) / seconds:.1f} s per hour of audio, librosa {3600 * min(peer_cpu) / seconds:.1f} s (cpu ratio {cpu_ratio:.2f}).
Wall-clock speed-up over the CPU ratio comes from overlapping files on the cores, so it needs idle cores.

**ratio: {ratio:.2f}** (target >= 2 for `jamendo96` on 2 cores). Features equal: **{'yes' if equal else 'NO'}**
(same shapes; values within 1e-4 relative / 1e-3 dB wherever the power is within 70 dB of the peak;
{'same resampler on both sides' if exact_resampler else 'resamplers differ, so the front ends were compared on the same audio'}).

Where the time goes: both decode with libsndfile/mpg123 (the largest share). We then save a slow
`mean(axis=0)` over a strided array (column adds instead), resample with a vectorised
linear interpolator (or soxr), and run STFT + mel + dB in torch; files overlap on threads, since
decoding, resampling and torch release the GIL.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(section, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
