"""Few labelled examples: pretrained embeddings + probe vs classical features vs from scratch vs fine-tuning.

Data: ``../shared/data/gtzan3`` (299 real 30 s clips, 3 genres). For each size k (training clips per
genre) and each seeded draw, k clips per genre are drawn for training, 10 per genre for validation
and every other clip is the test set (the same split for every arm). Arms:

(a) from scratch: ``musetag train gtzan-genre`` (the best from-scratch recipe on gtzan3), epochs cut
    to ``--scratch-epochs``;
(b) classical baseline: log-mel (96 bands) + 20 MFCC, mean and std over time (232 numbers per clip),
    standardised, scikit-learn ``LogisticRegression`` with C chosen on validation accuracy;
(c) probes: ``musetag train probe-linear`` / ``probe-mlp`` on a CSV-manifest dataset with
    ``preset = "embed:BACKBONE"``, for each backbone (and concatenations);
(d) fine-tuning: ``musetag train smalldata-finetune`` (the pretrained MTG-Jamendo baseline, frozen
    body first, augmentation, SWA; ``--finetune-epochs``) and ``smalldata-finetune-musicnn`` (Musicnn on
    MTG-Jamendo, front end frozen throughout; ``--finetune-musicnn-epochs``), on the 16 kHz waveform.

Every clip's embedding (and classical features, and mel-spectrogram) is computed once and reused
across draws: the embeddings come from ``musetag embed`` files (``--embeddings DIR`` holding
``BACKBONE.npy``; the embedding cache gives the same numbers, tests/test_probe.py) copied into one
``embed:`` feature cache per backbone that every draw's ``musetag train`` reuses. Times are CPU
seconds of this process (``time.process_time``, all its threads) per run, plus the one-off per-clip
extraction cost. Results are cached in ``--work`` (``results.jsonl``), so a rerun only adds what is
missing.

Usage: python bench/fewshot.py --work DIR --embeddings DIR [--backbones a,b] [--concat a+b]
       [--sizes 5,10,20] [--draws 3] [--arms classical,probe,scratch,finetune,finetune-musicnn]
       [--scratch-epochs 30] [--finetune-epochs 30] [--finetune-musicnn-epochs 15] [--slow-draws 1]
Writes bench/results/fewshot.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data" / "gtzan3"
GENRES = ("classical", "jazz", "rock")
VAL_PER_GENRE = 10
C_GRID = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]


def clips() -> list[tuple[str, str]]:
    with open(DATA / "labels.csv", newline="") as fh:
        return [(str(DATA / r["path"]), r["genre"]) for r in csv.DictReader(fh)]


def draw(all_clips, k: int, seed: int) -> dict[str, str]:
    """path -> split: k training and 10 validation clips per genre, the rest test."""
    rng = np.random.default_rng([k, seed])
    out = {}
    for g in GENRES:
        paths = sorted(p for p, genre in all_clips if genre == g)
        order = rng.permutation(len(paths))
        for rank, i in enumerate(order):
            out[paths[i]] = "train" if rank < k else "validation" if rank < k + VAL_PER_GENRE else "test"
    return out


def write_dataset(folder: Path, all_clips, split: dict[str, str], preset: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split"])
        for p, g in all_clips:
            w.writerow([p, g, split[p]])
    (folder / "dataset.toml").write_text(
        f'reader = "csv"\ntask = "multiclass"\npreset = "{preset}"\n[paths]\nmanifest = "manifest.csv"\n')
    return folder / "dataset.toml"


# ------------------------------------------------------------------------------------------ results
class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []

    def has(self, arm: str, k: int, seed: int) -> bool:
        return any(r["arm"] == arm and r["k"] == k and r["seed"] == seed for r in self.rows)

    def add(self, **row) -> None:
        self.rows.append(row)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{row['arm']:40s} k={row['k']:2d} seed={row['seed']} test acc {row['test_accuracy']:.3f} "
              f"({row['cpu_s']:.1f} s CPU)", flush=True)


# ------------------------------------------------------------------------------------------ (b) classical
def classical_features(all_clips, work: Path) -> tuple[np.ndarray, float]:
    """(clips, 232) log-mel + MFCC mean/std statistics, and the CPU seconds per clip."""
    path = work / "classical.npz"
    if path.exists():
        z = np.load(path)
        return z["x"], float(z["cpu_per_clip"])
    import librosa

    from musetag.audio import load_audio

    t0 = time.process_time()
    rows = []
    for p, _ in all_clips:
        audio, sr = load_audio(p, sample_rate=22050, mono=True)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=sr, n_mels=96))
        mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
        rows.append(np.concatenate([logmel.mean(1), logmel.std(1), mfcc.mean(1), mfcc.std(1)]))
    cpu = (time.process_time() - t0) / len(all_clips)
    x = np.stack(rows).astype(np.float32)
    np.savez(path, x=x, cpu_per_clip=cpu)
    return x, cpu


def classical_arm(all_clips, split, x) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.process_time()
    roles = np.array([split[p] for p, _ in all_clips])
    y = np.array([GENRES.index(g) for _, g in all_clips])
    scaler = StandardScaler().fit(x[roles == "train"])
    z = scaler.transform(x)
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=5000).fit(z[roles == "train"], y[roles == "train"])
        va = roles == "validation"
        acc = clf.score(z[va], y[va])
        p = np.clip(clf.predict_proba(z[va])[np.arange(va.sum()), y[va]], 1e-12, 1)
        key = (acc, np.log(p).mean())
        if best is None or key > best[0]:
            best = (key, c, clf)
    te = roles == "test"
    return float(best[2].score(z[te], y[te])), best[1], time.process_time() - t0


# ------------------------------------------------------------------------------------------ (c) probes
def plain(backbone: str) -> str:
    """``a+b`` with each part's pooled penultimate mean named (``a@layers=features+b@layers=features``): the
    vectors `musetag embed NAME` writes, not a dataset's default layers (``embed_spec.DEFAULT_LAYERS``)."""
    return "+".join(f"{p}@layers=features" for p in backbone.split("+"))


def embedding_cache(backbone: str, all_clips, emb_dir: Path, work: Path) -> Path:
    """An ``embed:`` feature cache for ``backbone`` ("a+b" concatenates), its array store filled from
    `musetag embed` files (the same numbers, tests/test_probe.py) instead of embedding every clip again."""
    from musetag.data.cache import CACHE_VERSION, _feature_key
    from musetag.data.embed_features import embedding_feature_config
    from musetag.data.store import arrays_dir, audio_key
    from musetag.inference.embeddings_file import read_embeddings

    cache = work / "caches" / backbone.replace("+", "__")
    settings = json.loads(json.dumps(_feature_key(embedding_feature_config(plain(backbone))), default=str))
    arrays = arrays_dir(cache / "features", settings, "float32", CACHE_VERSION)
    if arrays.is_dir() and len(list(arrays.glob("*.npy"))) == len(all_clips):
        return cache
    tables = []
    for part in backbone.split("+"):
        t = read_embeddings(emb_dir / f"{part}.npy")
        tables.append({os.path.abspath(os.path.join(DATA, p)): v for p, v in zip(t.paths, t.vectors)})
    arrays.mkdir(parents=True, exist_ok=True)
    for p, _ in all_clips:
        vec = np.concatenate([t[os.path.abspath(p)] for t in tables]).astype(np.float32)[:, None]
        np.save(arrays / audio_key(p), vec)
    return cache


#: the slow arms' feature presets, as the report's extraction column names them
PRESET_LABEL = {"jamendo96": "jamendo96 mel", "waveform16k": "16 kHz waveform"}


def preset_extraction_cpu(all_clips, work: Path, preset: str, n: int = 10) -> float:
    """CPU seconds per clip of the slow arms' features (their cache is built by worker processes whose CPU
    time the run's own clock does not see), measured on ``n`` clips."""
    path = work / f"{preset}_cpu.json"
    if path.exists():
        return float(json.loads(path.read_text())["cpu_per_clip"])
    from musetag.features import extract_file

    t0 = time.process_time()
    for p, _ in all_clips[:: max(1, len(all_clips) // n)][:n]:
        extract_file(p, preset)
    cpu = (time.process_time() - t0) / n
    path.write_text(json.dumps({"cpu_per_clip": cpu, "clips": n}))
    return cpu


def train_arm(recipe: str, toml: Path, out: Path, cache: Path, sets: list[str]) -> tuple[float, float, dict]:
    import musetag

    t0 = time.process_time()
    result = musetag.train(recipe, data=toml, out=out, sets=["progress=false", f"data.cache_dir={cache}", *sets])
    cpu = time.process_time() - t0
    summary = json.loads((out / "summary.json").read_text())
    return float(result.test["accuracy"]), cpu, summary


# ------------------------------------------------------------------------------------------ report
def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    v = np.array(values)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def write_report(res: Results, args, extraction: dict[str, float], notes: list[str]) -> None:
    arms = sorted(dict.fromkeys(r["arm"] for r in res.rows), key=lambda a: (a[:3], "+" in a, a))
    sizes = sorted({r["k"] for r in res.rows})
    lines = [
        "## Few labelled examples: probes on pretrained embeddings vs classical features (`bench/fewshot.py`)",
        "",
        f"Data: `../shared/data/gtzan3` (299 real 30 s clips: classical, jazz, rock). k training clips per genre,"
        f" {VAL_PER_GENRE} per genre for validation, every other clip for test (the same split for every arm);"
        " seeded draws (`numpy.random.default_rng([k, seed])`). Test accuracy: mean ± standard deviation over the"
        " draws (n = number of draws). CPU: seconds of CPU time per run (fit + choice of C or epochs + test"
        " scoring), this process's threads, "
        f"{platform.machine()}, 2 cores shared with other jobs; extraction: one-off CPU seconds per clip.",
        "",
        "| arm | " + " | ".join(f"k = {k} (test acc)" for k in sizes) + " | n | CPU s per run | extraction CPU s per clip |",
        "|---|" + "---:|" * (len(sizes) + 3),
    ]
    for arm in arms:
        rows = [r for r in res.rows if r["arm"] == arm]
        cells = [_cell([r["test_accuracy"] for r in rows if r["k"] == k]) for k in sizes]
        n = max(len([r for r in rows if r["k"] == k]) for k in sizes)
        cpu = np.mean([r["cpu_s"] for r in rows])
        ext = rows[0].get("extraction") or ("jamendo96 mel" if arm.startswith(("(a)", "(d)")) else None)
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {n} | {cpu:.1f} | "
                     + (f"{extraction.get(ext, float('nan')):.2f} ({ext})" if ext else "-") + " |")
    lines += ["", "Chosen regularisation (probe C per run, classical C per run):", ""]
    for arm in arms:
        cs = [r.get("C") for r in res.rows if r["arm"] == arm and r.get("C") is not None]
        if cs:
            lines.append(f"- {arm}: C = {', '.join(f'{c:g}' for c in cs)}")
    lines += ["", *notes, ""]
    (args.report or BENCH / "results" / "fewshot.md").write_text("\n".join(lines))
    classical = {k: np.mean([r["test_accuracy"] for r in res.rows if r["arm"].startswith("(b)") and r["k"] == k])
                 for k in sizes}
    probe = "(c) probe-linear on jamendo-musicnn"  # the README's example, fixed beforehand (not the best on test)
    for k in sizes:
        accs = [r["test_accuracy"] for r in res.rows if r["arm"] == probe and r["k"] == k]
        if accs and classical.get(k):
            print(f"ratio: test accuracy, {probe[4:]} / classical baseline at k = {k}: {np.mean(accs) / classical[k]:.2f}x")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--embeddings", type=Path, help="folder of `musetag embed` files BACKBONE.npy")
    ap.add_argument("--backbones", default="mtg-jamendo-baseline,jamendo-musicnn,mtat-musicnn,jamendo-fcn,msd-fcn")
    ap.add_argument("--concat", default="", help="comma-separated a+b backbone concatenations")
    ap.add_argument("--sizes", default="5,10,20")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--slow-draws", type=int, default=1, help="draws for the from-scratch and fine-tuning arms")
    ap.add_argument("--arms", default="classical,probe,scratch,finetune,finetune-musicnn")
    ap.add_argument("--scratch-epochs", type=int, default=30)
    ap.add_argument("--finetune-epochs", type=int, default=30)
    ap.add_argument("--finetune-musicnn-epochs", type=int, default=15)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--report", type=Path, default=None, help="where the table goes (default bench/results/fewshot.md)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.work is None or args.embeddings is None:
        # bench/run_all.py runs every script without arguments: this one is a long experiment (embedding 299
        # clips per backbone, training runs), recorded by hand like learning.md; its section is kept
        print("fewshot: a long experiment, not rerun here; bench/results/fewshot.md keeps the recorded run. "
              "Run it with: python bench/fewshot.py --work DIR --embeddings DIR (see the module docstring)")
        return
    if not (DATA / "labels.csv").exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared gtzan3 clips")
    args.work.mkdir(parents=True, exist_ok=True)
    res = Results(args.work / "results.jsonl")
    all_clips = clips()
    sizes = [int(s) for s in args.sizes.split(",")]
    arms = args.arms.split(",")
    extraction: dict[str, float] = {}
    cpu_file = args.embeddings / "cpu.txt"
    if cpu_file.exists():  # `/usr/bin/time` lines of the `musetag embed` runs: "NAME cpu_user=.. cpu_sys=.."
        for line in cpu_file.read_text().splitlines():
            name, *kv = line.split()
            if not kv or not all("=" in x for x in kv):
                continue  # "Command terminated by signal ...": an extraction stopped before the end
            d = dict(x.split("=") for x in kv)
            extraction[name] = (float(d["cpu_user"]) + float(d["cpu_sys"])) / len(all_clips)
    backbones = [b for b in args.backbones.split(",") if b and (args.embeddings / f"{b}.npy").exists()]
    combos = [c for c in args.concat.split(",") if c and all((args.embeddings / f"{p}.npy").exists() for p in c.split("+"))]
    for c in combos:
        extraction[c] = sum(extraction.get(p, float("nan")) for p in c.split("+"))

    if (args.work / "classical.npz").exists():
        extraction["log-mel + MFCC stats"] = float(np.load(args.work / "classical.npz")["cpu_per_clip"])
    if "classical" in arms:
        x, cpu = classical_features(all_clips, args.work)
        extraction["log-mel + MFCC stats"] = cpu
        for k in sizes:
            for seed in range(args.draws):
                if not res.has("(b) classical: log-mel + MFCC stats, LogReg", k, seed):
                    acc, c, t = classical_arm(all_clips, draw(all_clips, k, seed), x)
                    res.add(arm="(b) classical: log-mel + MFCC stats, LogReg", k=k, seed=seed, test_accuracy=acc,
                            cpu_s=t, C=c, extraction="log-mel + MFCC stats")
    if "probe" in arms:
        for bb in backbones + combos:
            cache = embedding_cache(bb, all_clips, args.embeddings, args.work)
            for recipe in ("probe-linear", "probe-mlp"):
                arm = f"(c) {recipe} on {bb}"
                for k in sizes:
                    for seed in range(args.draws):
                        if res.has(arm, k, seed):
                            continue
                        folder = args.work / "runs" / f"{recipe}-{bb}-{k}-{seed}"
                        toml = write_dataset(folder, all_clips, draw(all_clips, k, seed), f"embed:{plain(bb)}")
                        acc, cpu, summary = train_arm(recipe, toml, folder / "run", cache, [])
                        res.add(arm=arm, k=k, seed=seed, test_accuracy=acc, cpu_s=cpu, C=summary["probe"]["C"],
                                extraction=bb)
    slow = [("scratch", "(a) from scratch: gtzan-genre", "gtzan-genre", "jamendo96", [f"epochs={args.scratch_epochs}"]),
            ("finetune", "(d) fine-tune: smalldata-finetune", "smalldata-finetune", "jamendo96",
             [f"epochs={args.finetune_epochs}"]),
            ("finetune-musicnn", "(d) fine-tune: smalldata-finetune-musicnn", "smalldata-finetune-musicnn",
             "waveform16k", [f"epochs={args.finetune_musicnn_epochs}"])]
    for key, _, _, preset, _ in slow:
        if key in arms or (args.work / f"{preset}_cpu.json").exists():
            extraction[PRESET_LABEL[preset]] = preset_extraction_cpu(all_clips, args.work, preset)
    for key, arm, recipe, preset, sets in slow:
        if key not in arms:
            continue
        arm = f"{arm} ({sets[0]})"
        for k in sizes:
            for seed in range(args.slow_draws):
                if res.has(arm, k, seed):
                    continue
                folder = args.work / "runs" / f"{recipe}-{k}-{seed}"
                toml = write_dataset(folder, all_clips, draw(all_clips, k, seed), preset)
                acc, cpu, _ = train_arm(recipe, toml, folder / "run", args.work / "caches" / preset, sets)
                res.add(arm=arm, k=k, seed=seed, test_accuracy=acc, cpu_s=cpu, extraction=PRESET_LABEL[preset])
    write_report(res, args, extraction, args.note)


if __name__ == "__main__":
    main()
