"""The main job end to end on an embedded default: ``musetag demo`` (what ``make demo`` runs).

Stages, each reported as it runs and each failing loudly (non-zero exit, the stage named):

1. generate the synthetic labelled corpus (:func:`musetag.data.synth.make_corpus`),
2. prepare its features and train the shipped ``demo`` recipe (:func:`musetag.train`),
3. evaluate it (PR-AUC / ROC-AUC on the held-out test split) and write the HTML report,
4. package the chosen checkpoint at ``OUT/model``,
5. tag a few freshly generated clips with :class:`musetag.Tagger` and print their top tags,
6. tag real music with a real pretrained model (the default mood model, from the cache, the mirror
   ``$MUSETAG_MODEL_MIRROR`` or its upstream URL): the songs in ``real_audio`` when given, else the
   generated clips; without network or mirror it says so and the demo still succeeds,

then say where the report is and what to run next.
"""
from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from musetag.errors import MusetagError

MARKER = ".musetag-demo"
#: below this many clips a failing training or evaluation stage says that the corpus is too small
SMALL_CORPUS = 60


class DemoError(MusetagError):
    """A stage of the demo failed; the message names the stage."""


@dataclass
class DemoResult:
    out: Path
    run_dir: Path
    model: Path
    report: Path | None
    validation: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    tagged: list = field(default_factory=list)
    real: list = field(default_factory=list)


def _say(msg: str, echo: Callable[[str], None]) -> None:
    echo(msg)


def _prepare_out(out: Path) -> None:
    """The demo owns OUT: refuse a non-empty folder that is not a previous demo's."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise DemoError(
            f"{out} exists and is not a musetag demo folder; choose another --out (the demo rewrites its folder)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `musetag demo`; safe to delete\n")
    for sub in ("run", "model", "report", "examples"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)


def run_demo(
    out: str | Path = "demo-output",
    *,
    n_clips: int = 200,
    seconds: float = 10.0,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    real_audio: str | Path | None = None,
    pretrained: str | None = None,
) -> DemoResult:
    """Run the whole demo into ``out`` and return what it produced: the six stages below, in order."""
    from musetag.inference.hub import DEFAULT_MODEL, get_entry

    # what the last stage needs is checked before a minute of training, not reported as "skipped" after it
    if real_audio is not None and not Path(real_audio).is_dir():
        raise DemoError(f"--real-audio {real_audio}: no such folder; give a folder of songs (MP3, FLAC, OGG, WAV) "
                        "or leave it out to tag the generated clips")
    pretrained = pretrained or DEFAULT_MODEL
    try:
        get_entry(pretrained)
    except MusetagError as exc:
        raise DemoError(f"--pretrained: {exc}") from exc
    out = Path(out).resolve()
    _prepare_out(out)
    t0 = time.perf_counter()

    def stage(n: int, title: str):
        _say(f"\n[{n}/6] {title}  (t={time.perf_counter() - t0:.0f}s)", echo)

    stage(1, f"generating the synthetic corpus: {n_clips} clips of {seconds:g} s with audible tags")
    dataset = _corpus_stage(out / "corpus", n_clips, seconds, seed, progress, echo)
    stage(2, "preparing features and training the `demo` recipe")
    run_dir = out / "run"
    try:
        val = _training_stage(dataset, run_dir, epochs, progress, echo)
        stage(3, "evaluating on the held-out test split and writing the report")
        test_table, report_path = _evaluation_stage(run_dir, out / "report", echo)
    except DemoError as exc:
        if n_clips >= SMALL_CORPUS:
            raise
        # an empty split or a test split without positives: the fix is more clips, not the manifest
        raise DemoError(f"{exc}; a corpus of {n_clips} clips is too small for the demo's train/validation/test "
                        f"splits: use --clips {SMALL_CORPUS} or more (default 200)") from exc
    stage(4, "packaging the model")
    model = _package_stage(run_dir, out / "model", echo)
    stage(5, "tagging freshly generated clips the model has never heard")
    tagged = _tagging_stage(model, out / "examples", seconds, seed, echo)
    stage(6, f"tagging real music with the pretrained {pretrained} (trained on real music)")
    real = _tag_real_music(pretrained, real_audio, [Path(t["path"]) for t in tagged], echo)
    _say_next(time.perf_counter() - t0, test_table, report_path, model, pretrained, real, echo)
    return DemoResult(out=out, run_dir=run_dir, model=Path(model), report=report_path,
                      validation=val, test=test_table, tagged=tagged, real=real)


def _corpus_stage(corpus: Path, n_clips: int, seconds: float, seed: int, progress: bool, echo) -> Path:
    """Stage 1: the synthetic corpus (reused when its parameters match); its ``dataset.toml``."""
    from musetag.data.synth import make_corpus

    manifest = corpus / "manifest.csv"
    try:
        if not _corpus_is_current(corpus, n_clips, seconds, seed):
            if corpus.exists():
                shutil.rmtree(corpus)
            manifest = make_corpus(corpus, n_clips=n_clips, seconds=seconds, seed=seed, progress=progress)
            (corpus / ".demo-params").write_text(f"{n_clips} {seconds} {seed}\n")
        else:
            _say(f"  reusing {corpus}", echo)
    except MusetagError as exc:
        raise DemoError(f"corpus stage failed: {exc}") from exc
    tags = (corpus / "tags.txt").read_text().split()
    _say(f"  {manifest}  ({len(tags)} tags: {', '.join(tags)})", echo)
    return corpus / "dataset.toml"


def _training_stage(dataset: Path, run_dir: Path, epochs: int | None, progress: bool, echo) -> dict:
    """Stage 2: features and the `demo` recipe trained into ``run_dir``; the validation scores."""
    from musetag.training import train

    sets = ["progress=true" if progress else "progress=false"]
    if epochs is not None:
        sets.append(f"epochs={epochs}")
    try:
        result = train("demo", data=dataset, out=run_dir, sets=sets)
    except MusetagError as exc:
        raise DemoError(f"training stage failed: {exc}") from exc
    val = result.validation
    _say(
        f"  best epoch {result.best_epoch}: validation {result.metric} {val.get(result.metric, float('nan')):.4f}",
        echo,
    )
    return val


def _evaluation_stage(run_dir: Path, report_dir: Path, echo) -> tuple[dict, Path]:
    """Stage 3: the official table on the test split and the HTML report."""
    try:
        test_table = _score_run(run_dir)
        from musetag.evaluate.report import make_report

        report_path = Path(make_report(run_dir, report_dir, title="musetag demo: synthetic corpus"))
    except MusetagError as exc:
        raise DemoError(f"evaluation stage failed: {exc}") from exc
    for key in ("PR-AUC-macro", "ROC-AUC-macro", "PR-AUC-micro", "ROC-AUC-micro", "F-score-macro"):
        if key in test_table:
            _say(f"  test {key:14s} {test_table[key]:.4f}", echo)
    return test_table, report_path


def _package_stage(run_dir: Path, out: Path, echo) -> Path:
    """Stage 4: the run packaged."""
    from musetag.tag.package_from_run import create_package

    try:
        model = create_package(run_dir, out, overwrite=True)
    except MusetagError as exc:
        raise DemoError(f"packaging stage failed: {exc}") from exc
    _say(f"  {model}", echo)
    return model


def _tagging_stage(model: Path, examples: Path, seconds: float, seed: int, echo) -> list[dict]:
    """Stage 5: four new synthetic clips tagged by the package, shown beside their true tags."""
    from musetag.data.synth import make_corpus
    from musetag.inference import Tagger

    tagged = []
    try:
        examples_manifest = make_corpus(examples, n_clips=4, seconds=seconds, seed=seed + 1000)
        truth = _read_manifest(examples_manifest)
        tagger = Tagger.from_package(model)
        for rel, true_tags in truth:
            path = examples_manifest.parent / rel
            res = tagger.tag(str(path))
            top = res.top(3)
            tagged.append({"path": str(path), "top": top, "true": true_tags, "decisions": res.decisions})
            shown = ", ".join(f"{t} {p:.2f}" for t, p in top)
            _say(f"  {path.name}: {shown}   (true: {', '.join(true_tags)})", echo)
    except MusetagError as exc:
        raise DemoError(f"tagging stage failed: {exc}") from exc
    return tagged


def _say_next(elapsed: float, test_table: dict, report_path: Path, model: Path, pretrained: str, real: list,
              echo) -> None:
    """The closing lines: the scores, the report, and the commands to try next."""
    pr = test_table.get("PR-AUC-macro", float("nan"))
    _say(f"\nDone in {elapsed:.0f} s. Test PR-AUC-macro {pr:.4f}, ROC-AUC-macro "
         f"{test_table.get('ROC-AUC-macro', float('nan')):.4f}.", echo)
    _say(f"Report: {report_path}", echo)
    _say("Next:", echo)
    _say(f"  musetag tag {model} YOUR_MUSIC_FOLDER --recursive --out tags.csv", echo)
    _say(f"  musetag serve {model}            # web page at http://127.0.0.1:8000/", echo)
    _say("  your own music: write a CSV manifest (path,tags[,split,group]) and a dataset TOML, then", echo)
    _say("    musetag train demo --data my-dataset.toml --out runs/mine", echo)
    _say("  published systems on MTG-Jamendo: musetag train --list  (e.g. bour2021-filters-m128-i224-wbce)", echo)
    if real:
        _say(f"  musetag tag YOUR_SONG.mp3                # real moods with {pretrained}", echo)


def _tag_real_music(name: str, real_audio, fallback: list[Path], echo) -> list[dict]:
    """Stage 6: never fails the demo for want of network; a broken model or song is still reported."""
    from musetag.inference import hub
    from musetag.inference import Tagger

    try:
        folder = hub.pull(name)
    except MusetagError as exc:
        _say(f"  skipped: {exc}", echo)
        _say(f"  (with network, or {hub.MIRROR_ENV} pointing at a folder of the upstream files, this stage tags "
             "real songs with real moods)", echo)
        return []
    entry = hub.get_entry(name)
    _say(f"  {folder}  ({entry.licence}; cite: {entry.citation})", echo)
    songs: list[Path] = []
    if real_audio and Path(real_audio).is_dir():
        from musetag.tag.batch import AUDIO_EXTENSIONS

        songs = sorted(p for p in Path(real_audio).iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)[:5]
    if not songs:
        given = (f"no audio files in {real_audio}" if real_audio else "no real songs given (--real-audio DIR)")
        _say(f"  {given}: tagging the generated clips instead; their moods mean "
             "little, the model was trained on real music", echo)
        songs = fallback
    tagger = Tagger.from_package(folder)
    rows = []
    for song in songs:
        res = tagger.tag(str(song))
        if not res.ok:
            _say(f"  {song.name}: error: {res.status}", echo)
            continue
        top = res.top(3)
        rows.append({"path": str(song), "top": top})
        _say(f"  {song.name}: {', '.join(f'{t} {p:.2f}' for t, p in top)}", echo)
    return rows



def _corpus_is_current(corpus: Path, n_clips: int, seconds: float, seed: int) -> bool:
    params = corpus / ".demo-params"
    return params.exists() and params.read_text().split() == [str(n_clips), str(seconds), str(seed)] \
        and (corpus / "dataset.toml").exists()


def _read_manifest(path: Path) -> list[tuple[str, list[str]]]:
    with open(path, newline="") as fh:
        return [(row["path"], [t for t in row["tags"].split(";") if t]) for row in csv.DictReader(fh)]


def _score_run(run_dir: Path) -> dict:
    """The official MediaEval table on the run's test predictions, thresholds tuned on validation."""
    import numpy as np

    from musetag.evaluate import evaluate

    pred = run_dir / "predictions"
    needed = ["test.npy", "test_targets.npy", "validation.npy", "validation_targets.npy"]
    missing = [n for n in needed if not (pred / n).exists()]
    if missing:
        raise DemoError(f"the run folder {run_dir} lacks predictions/{', '.join(missing)}")
    tags = None
    result = evaluate(
        np.load(pred / "test.npy"), np.load(pred / "test_targets.npy"), tags=tags,
        thresholds_from=(np.load(pred / "validation.npy"), np.load(pred / "validation_targets.npy")),
    )
    return dict(result["table"])
