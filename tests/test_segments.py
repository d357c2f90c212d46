"""Per-window scores (``Tagger(segments=True)``, ``musetag tag --segments``): the windows cover the
audio without gaps beyond the model's hop, the same windows whether the file is tagged whole,
streamed or in a worker, and their probabilities give back the file's scores by the package's
aggregation rule (recomputed here with scipy, not with musetag's code)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scipy.special import expit, logit, softmax

from musetag.inference import Tagger
from musetag.inference.package import save_package
from test_package import TAGS, feature_dict, make_package, tiny_model

SR = 12000  # jamendo96: 12 kHz, hop 256 -> 46.875 frames per second
FPS = SR / 256

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def varied(seconds: float, seed: int = 0) -> np.ndarray:
    """A second-by-second changing signal (tones of different pitch and loudness plus noise), so
    windows score differently."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(np.ceil(seconds))):
        t = np.arange(SR) / SR
        f = rng.uniform(80, 4000)
        parts.append(rng.uniform(0.05, 0.6) * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(SR))
    return np.concatenate(parts)[: int(seconds * SR)].astype(np.float32)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, varied(7.3), SR)
    return path


def check_cover(seg, duration: float, hop_s: float, tol: float):
    start, end = seg.start, seg.end
    assert start[0] == pytest.approx(0.0, abs=tol)
    assert end[-1] == pytest.approx(duration, abs=tol)  # the tail window reaches the end (clipped to it)
    assert np.all(end > start) and np.all(end <= duration + 1e-9)
    steps = np.diff(start)
    assert np.all(steps <= hop_s + tol) and np.all(steps > 0)  # never more than one hop apart
    assert np.all(start[1:] <= end[:-1] + tol)  # no gap between one window and the next


@pytest.mark.parametrize("frames,hop", [(64, 64), (64, 32)])
def test_windows_cover_the_audio_in_memory_streamed_and_in_a_worker(tmp_path, song, frames, hop):
    pkg = make_package(tmp_path / "pkg", frames=frames, hop=hop)
    tagger = Tagger.from_package(pkg, segments=True)
    whole = tagger.tag(song)
    seg = whole.segments
    assert len(seg) == whole.n_segments == seg.scores.shape[0] and seg.scores.shape[1] == len(TAGS)
    assert whole.duration == pytest.approx(7.3, abs=1e-3)
    # windows of `frames` frames every `hop` frames: 1.365 s every 1.365 s or 0.683 s
    np.testing.assert_allclose(np.diff(seg.start), hop / FPS, atol=1e-9)
    np.testing.assert_allclose((seg.end - seg.start)[:-1], frames / FPS, atol=1e-9)
    check_cover(seg, whole.duration, hop / FPS, tol=1e-9)

    # keeping the windows changes nothing in the file's scores (the same forward pass)
    plain = Tagger.from_package(pkg).tag(song)
    assert plain.segments is None and "segments" not in plain.to_row()
    np.testing.assert_array_equal(plain.scores_array, whole.scores_array)

    # streamed in 2-second blocks: the same windows at the same times
    streamed = Tagger.from_package(pkg, segments=True, stream_seconds=1.0, block_seconds=2.0).tag(str(song))
    np.testing.assert_allclose(streamed.segments.start, seg.start, atol=1e-9)
    np.testing.assert_allclose(streamed.segments.end, seg.end, atol=1e-9)
    np.testing.assert_allclose(streamed.segments.scores, seg.scores, atol=2e-6)

    # in a worker process (forked: it runs the network itself and sends the windows back)
    pooled = next(tagger.tag_many([str(song)], workers=1))
    np.testing.assert_allclose(pooled.segments.start, seg.start, atol=1e-9)
    np.testing.assert_allclose(pooled.segments.scores, seg.scores, atol=1e-6)

    row = whole.to_row()
    assert [round(s["start"], 3) for s in row["segments"]] == [round(float(s), 3) for s in seg.start]
    assert len(row["segments"][0]["scores"]) == len(TAGS)
    json.dumps(row)  # plain JSON types


def test_a_file_shorter_than_one_window_is_one_window_over_the_whole_file(tmp_path):
    pkg = make_package(tmp_path / "pkg", frames=256, hop=128)  # 5.46 s windows
    res = Tagger.from_package(pkg, segments=True).tag(varied(2.0), SR)
    assert len(res.segments) == 1
    assert (res.segments.start[0], res.segments.end[0]) == (0.0, pytest.approx(2.0))
    np.testing.assert_allclose(res.segments.scores[0], res.scores_array, atol=1e-6)


def test_audio_rule_chunks_cover_the_file(tmp_path, song):
    """Won et al.'s evenly spaced chunks with count 0 (the baseline's whole-song rule): ceil(n / L)
    chunks from the start to the end, each L samples."""
    model = tiny_model(len(TAGS))
    spec = model.musetag_config
    length = 2 * SR
    pkg = save_package(
        tmp_path / "chunks", model_name=spec["name"], model_args=spec["args"], state_dict=model.state_dict(),
        features=feature_dict(), tags=list(TAGS), task="multilabel",
        segment={"rule": "evenly_spaced", "samples": length, "count": 0, "aggregation": "mean"},
    )
    res = Tagger.from_package(pkg, segments=True).tag(song)
    n = int(round(7.3 * SR))
    chunks = -(-n // length)
    hop = (n - length) // (chunks - 1)
    assert len(res.segments) == chunks == 4
    np.testing.assert_allclose(res.segments.start, np.arange(chunks) * hop / SR, atol=1e-9)
    np.testing.assert_allclose(res.segments.end - res.segments.start, length / SR, atol=1e-9)
    check_cover(res.segments, res.duration, hop / SR, tol=(chunks - 1) / SR)
    np.testing.assert_allclose(res.scores_array, res.segments.scores.mean(axis=0), atol=1e-6)


def loud_model():
    """The tiny model with its output layer scaled up: logits far apart, so that the mean of
    probabilities and the mean of logits really differ."""
    import torch

    model = tiny_model(len(TAGS), seed=3, width=4)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(100.0)
        last.bias.zero_()
    return model


@pytest.mark.parametrize(
    "aggregation,task",
    [("mean", "multilabel"), ("max", "multilabel"), ("mean_logits", "multilabel"),
     ("mean", "multiclass"), ("mean_logits", "multiclass")],
)
def test_window_scores_aggregate_to_the_file_scores_by_the_package_rule(tmp_path, song, aggregation, task):
    pkg = make_package(tmp_path / "pkg", frames=64, hop=32, aggregation=aggregation, task=task, model=loud_model())
    res = Tagger.from_package(pkg, segments=True).tag(song)
    p = res.segments.scores.astype(np.float64)
    assert len(p) == res.n_segments == 10
    if task == "multiclass":
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)  # each window a distribution
    assert np.ptp(p, axis=0).max() > 0.05  # the windows do differ: the rules give different answers
    rules = {
        "mean": p.mean(axis=0),
        "max": p.max(axis=0),
        # softmax of the mean logit (log p is the logit up to a per-window constant), or sigmoid
        "mean_logits": softmax(np.log(p).mean(axis=0)) if task == "multiclass" else expit(logit(p).mean(axis=0)),
    }
    expected = rules[aggregation]
    for name, other in rules.items():  # the rules give answers far apart: the check below tells them apart
        assert name == aggregation or np.abs(other - expected).max() > 1e-4  # 50x the tolerance
    np.testing.assert_allclose(res.scores_array, expected, atol=2e-6)
    from musetag.evaluate.aggregation import aggregate_windows

    np.testing.assert_allclose(aggregate_windows(p, aggregation, task), expected, atol=1e-9)


def test_cli_segments_jsonl_and_plot_timelines(tmp_path, song, capsys):
    """`musetag tag --segments` writes the windows the API gives; `musetag plot` draws them."""
    from matplotlib.image import imread

    from musetag.cli import main
    from musetag.tag.timeline import COLOURS
    from musetag.tag.writers import read_results

    pkg = make_package(tmp_path / "pkg", frames=64, hop=32)
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "a.wav").write_bytes(song.read_bytes())
    sf.write(folder / "b.wav", varied(3.0, seed=5), SR)
    (folder / "broken.wav").write_text("not audio")
    out = tmp_path / "tags.jsonl"
    rc = main(["tag", str(pkg), str(folder), "--segments", "--out", str(out), "--workers", "0", "--no-progress"])
    assert rc != 0  # one file failed, the others were tagged
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in read_results(out)}
    api = Tagger.from_package(pkg, segments=True).tag(folder / "a.wav")
    seg = rows["a.wav"]["segments"]
    assert [s["start"] for s in seg] == [round(float(x), 3) for x in api.segments.start]
    assert [s["end"] for s in seg] == [round(float(x), 3) for x in api.segments.end]
    np.testing.assert_allclose([s["scores"] for s in seg], api.segments.scores, atol=1e-6)
    assert rows["broken.wav"]["status"] != "ok" and "segments" not in rows["broken.wav"]

    # CSV stays one row per file: --segments asks for .jsonl
    capsys.readouterr()
    assert main(["tag", str(pkg), str(folder), "--segments", "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "--segments --out" in err and "t.csv" in err and "RESULTS.jsonl" in err
    assert not (tmp_path / "t.csv").exists()

    assert main(["plot", str(out), "--out", str(tmp_path / "plots"), "--top", "3"]) == 0
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["001-a.png", "002-b.png"]  # the broken file has no picture
    image = imread(pngs[0])[..., :3]
    first = np.array([int(COLOURS[0][i : i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(image - first).max(axis=-1) < 0.02).sum() > 200  # the top tag's line is drawn
    page = (tmp_path / "plots" / "index.html").read_text()
    assert 'src="001-a.png"' in page and 'src="002-b.png"' in page and "broken.wav" in page
    assert "http" not in page  # nothing fetched from elsewhere

    plain = tmp_path / "plain.jsonl"
    main(["tag", str(pkg), str(folder / "b.wav"), "--out", str(plain), "--workers", "0", "--no-progress"])
    capsys.readouterr()
    assert main(["plot", str(plain), "--out", str(tmp_path / "p2")]) == 2
    assert "no row has per-window scores" in capsys.readouterr().err
    run = tmp_path / "run"  # a training run's folder: it said "no such results file"
    (run / "predictions").mkdir(parents=True)
    assert main(["plot", str(run), "--out", str(tmp_path / "p3")]) == 2
    err = capsys.readouterr().err
    assert f"{run} is a folder" in err and "musetag report RUN" in err
