"""Windows that fit the clip: embeddings cut windows overlapping by at most half their length.

Known answers: chunk starts worked out by hand from the rule (``hop >= length - floor(length / 2)``, chunks
spread from the start to the end, never more than the upstream rule's); a probe package records the rule its
embeddings were made with, and tagging with it hands the probe exactly the cached embedding of the file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import pretrained_package
from test_probe import _clips, _dataset

WHOLE = "mtg-jamendo-baseline-whole"  # evenly_spaced, count 0: a 30 s clip is two 29.1 s chunks upstream
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_chunk_starts_overlap_at_most_half_and_keep_the_upstream_rule_where_it_already_does():
    from musetag.inference.segments import audio_chunk_starts

    L = 464000  # jamendo-fcn: 29 s at 16 kHz, 16 chunks upstream
    assert len(audio_chunk_starts(480000, L, "evenly_spaced", 16)) == 16
    assert audio_chunk_starts(480000, L, "evenly_spaced", 16, 0.5) == [0]  # 30 s: one window
    assert audio_chunk_starts(300000, L, "evenly_spaced", 16, 0.5) == [0]  # shorter than a window: one, padded
    # 60 s: (960000 - 464000) // 232000 = 2 hops -> 3 chunks, the last ending at the end
    assert audio_chunk_starts(960000, L, "evenly_spaced", 16, 0.5) == [0, 248000, 496000]
    # musicnn (3 s, 16 chunks) on 30 s: upstream hop (480000 - 48000) // 16 = 27000 >= 24000, kept as is
    assert audio_chunk_starts(480000, 48000, "evenly_spaced", 16, 0.5) == [i * 27000 for i in range(16)]
    # count 0 (as many as cover the file): 40 s of 29.1 s chunks at 12 kHz, 2 upstream overlapping by 18.2 s
    assert audio_chunk_starts(480000, 349200, "evenly_spaced", 0) == [0, 130800]
    assert audio_chunk_starts(480000, 349200, "evenly_spaced", 0, 0.5) == [0]
    assert audio_chunk_starts(480000, 349200, "centre_excerpt", 0, 0.5) == [65400]


def test_regular_windows_get_a_hop_of_at_least_half_their_length():
    from musetag.features import FeatureConfig
    from musetag.inference.frontend import FrontEnd

    cfg = FeatureConfig().to_dict()
    assert FrontEnd(cfg, {"frames": 101, "hop": 10, "max_overlap": 0.5}).hop == 51  # overlap 50 <= 50.5
    assert FrontEnd(cfg, {"frames": 100, "hop": 80, "max_overlap": 0.5}).hop == 80
    assert FrontEnd(cfg, {"frames": 100, "hop": 10}).hop == 10


def test_window_option_errors_name_the_fix(tmp_path):
    from musetag.data import load_dataset_config
    from musetag.errors import ConfigError

    pretrained_package(WHOLE)
    rows = [("x.mp3", "a", "train")]
    with pytest.raises(ConfigError, match="unknown option 'hop=3'.*NAME@windows=fit"):
        load_dataset_config(_dataset(tmp_path / "a", f"embed:{WHOLE}@hop=3", rows)).feature_config()
    with pytest.raises(ConfigError, match="windows='half' is not one of fit, upstream"):
        load_dataset_config(_dataset(tmp_path / "b", f"embed:{WHOLE}@windows=half", rows)).feature_config()
    config = load_dataset_config(_dataset(tmp_path / "c", f"embed:{WHOLE}:scores+{WHOLE}@windows=upstream", rows))
    # a catalogue backbone without layers= gets the dataset default (DEFAULT_LAYERS); with :scores it has none
    assert config.feature_config().embed == f"{WHOLE}:scores@windows=fit+{WHOLE}@layers=-3,-2,-1,windows=upstream"


def test_a_probe_package_tags_with_the_windows_its_embeddings_were_made_with(tmp_path):
    pretrained_package(WHOLE)
    import musetag
    from musetag.data.cache import FeatureCache, prepare
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    result = prepare(_dataset(tmp_path / "ds", f"embed:{WHOLE}@layers=features", _clips()), progress=False)
    cache = FeatureCache(result.out_dir)
    cached = {t["audio_path"]: cache.load(i, mmap=False)[:, 0].astype(np.float64) for i, t in enumerate(cache.tracks)}
    run = tmp_path / "run"
    musetag.train("probe-linear", data=tmp_path / "ds" / "ds.toml",
                  out=run, sets=["progress=false", "probe.grid=[1.0]"])
    pkg = create_package(run, tmp_path / "pkg")
    segment = json.loads((pkg / "musetag.json").read_text())["segment"]
    assert segment["max_overlap"] == 0.5 and segment["rule"] == "evenly_spaced"
    sd = {k: v.double().numpy() for k, v in load_checkpoint(run / "checkpoints" / "best.pt")["state_dict"].items()}
    tagger = Tagger.from_package(pkg)
    probe_sees = load_embedder(pkg)  # the package's own windows and mean embedding: what its probe is given
    for audio in list(cached)[:2]:
        np.testing.assert_allclose(probe_sees.embed(audio), cached[audio], rtol=1e-6, atol=1e-6)
        logits = ((cached[audio] - sd["mean"]) / sd["std"]) @ sd["classifier.weight"].T + sd["classifier.bias"]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(tagger.tag(audio).scores_array, expected, atol=1e-5)
        windows, _ = tagger.front.segments(audio)
        assert len(windows) == 1  # a 30 s clip: one 29.1 s window, not the upstream two
    upstream = load_embedder(WHOLE, windows="upstream").embed(audio)
    assert not np.allclose(upstream, cached[audio], atol=1e-4)  # the rule matters: skew would show


def test_musetag_embed_records_its_window_rule_and_never_mixes_two(tmp_path):
    pretrained_package(WHOLE)
    from musetag.errors import ConfigError
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files

    audio = _clips(1)[0][0]
    out = tmp_path / "e.npy"
    embed_files(WHOLE, [audio], out, workers=1, progress=False)
    table = read_embeddings(out)
    assert table.meta["windows"] == "fit" and table.meta["segment"]["max_overlap"] == 0.5
    np.testing.assert_array_equal(table.vectors[0], load_embedder(WHOLE).embed(audio))
    with pytest.raises(ConfigError, match="windows=fit, not upstream.*--restart"):
        embed_files(WHOLE, [audio], out, workers=1, progress=False, windows="upstream")


def test_the_ray_engine_refuses_upstream_windows_it_would_not_cut(tmp_path, capsys):
    from musetag.cli import main

    code = main(["embed", WHOLE, str(tmp_path), "--out", str(tmp_path / "e.npy"), "--engine", "ray",
                 "--windows", "upstream", "--no-progress"])
    assert code != 0 and "--windows upstream runs with the local engine only" in capsys.readouterr().err
