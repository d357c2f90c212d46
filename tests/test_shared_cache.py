"""One cache folder for ``prepare`` and ``train``, and arrays shared by datasets over the same audio
(issue 18, items 1 and 2). Decoding is counted by wrapping ``musetag.features.extract_file`` (prepare
runs in this process with ``workers=0``)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import musetag.features
from musetag.data import load_dataset_config, load_records
from musetag.data.cache import FeatureCache, prepare
from musetag.data.store import DEFAULT_BASE, feature_key
from musetag.data.synth import make_corpus
from musetag.errors import DatasetError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """12 clips and two tasks over them: the synth tags (multilabel) and fast/slow (multiclass, own split)."""
    root = tmp_path_factory.mktemp("shared")
    make_corpus(root, n_clips=12, seconds=1.5, seed=3)
    rows = list(csv.DictReader(open(root / "manifest.csv", encoding="utf-8")))
    with open(root / "tempo.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags"])
        for row in rows:
            writer.writerow([row["path"], "fast" if "fast" in row["tags"].split(";") else "slow"])
    (root / "moods.toml").write_text('reader = "csv"\ntask = "multilabel"\npreset = "jamendo96"\n'
                                     '[paths]\nmanifest = "manifest.csv"\n[split]\nseed = 0\nfractions = [0.5, 0.25, 0.25]\n')
    (root / "tempo.toml").write_text('reader = "csv"\ntask = "multiclass"\npreset = "jamendo96"\n'
                                     '[paths]\nmanifest = "tempo.csv"\n[split]\nseed = 7\nfractions = [0.5, 0.25, 0.25]\nstratify = false\n')
    return root


@pytest.fixture
def decodes(monkeypatch) -> list:
    calls: list = []
    real = musetag.features.extract_file

    def counting(path, config, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, config, *args, **kwargs)

    monkeypatch.setattr(musetag.features, "extract_file", counting)
    return calls


def _fresh(corpus: Path, tmp_path: Path) -> Path:
    """A copy of the corpus's TOMLs and manifests (the audio stays where it is, so its identity is kept)."""
    for name in ("moods.toml", "tempo.toml", "manifest.csv", "tempo.csv", "tags.txt"):
        shutil.copy(corpus / name, tmp_path / name)
    (tmp_path / "audio").symlink_to(corpus / "audio")
    return tmp_path


def test_prepare_without_out_is_the_folder_train_reads(corpus, tmp_path, decodes):
    from musetag.training.recipes import load_config
    from musetag.training.data import load_training_data

    root = _fresh(corpus, tmp_path)
    toml = root / "moods.toml"
    result = prepare(toml, workers=0, progress=False)
    expected = root / DEFAULT_BASE / f"moods-{feature_key(load_dataset_config(toml).feature_config())}"
    assert result.out_dir == expected and result.n_cached == 12
    assert len(decodes) == 12
    cfg = load_config("demo", overrides={"data": {"dataset": str(toml)}, "progress": False})
    data = load_training_data(cfg, tmp_path / "run", progress=False)
    assert len(decodes) == 12  # train decoded nothing: it read prepare's folder
    assert Path(data.cache_dir) == expected
    cache = FeatureCache(expected)
    by_id = {t["id"]: cache.file(i).resolve() for i, t in enumerate(cache.tracks)}
    assert [p.resolve() for p in data.splits["train"].paths] == [by_id[i] for i in data.splits["train"].ids]


def test_config_without_a_file_still_needs_out(tmp_path):
    from musetag.data.config import DatasetConfig

    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,tags\na.wav,x\n")
    config = DatasetConfig.from_dict({"reader": "csv", "preset": "jamendo96", "paths": {"manifest": "m.csv"}},
                                     base_dir=tmp_path)
    with pytest.raises(DatasetError, match="--out"):
        prepare(config, None, workers=0, progress=False)


def test_second_dataset_over_the_same_audio_decodes_nothing(corpus, tmp_path, decodes):
    root = _fresh(corpus, tmp_path)
    moods = prepare(root / "moods.toml", workers=0, progress=False)
    assert len(decodes) == 12
    tempo = prepare(root / "tempo.toml", workers=0, progress=False)
    assert len(decodes) == 12, "the second dataset decoded audio"
    assert tempo.n_computed == 0 and tempo.n_cached == 12 and moods.out_dir != tempo.out_dir

    a, b = FeatureCache(moods.out_dir), FeatureCache(tempo.out_dir)
    assert (a.task, b.task) == ("multilabel", "multiclass") and b.vocab.tags == ("fast", "slow")
    files_a = {t["audio_path"]: a.file(i).resolve() for i, t in enumerate(a.tracks)}
    files_b = {t["audio_path"]: b.file(i).resolve() for i, t in enumerate(b.tracks)}
    assert files_a == files_b  # one array per audio file
    # each dataset's own split and statistics, computed here from its own training arrays
    splits_a = {t["audio_path"]: t["split"] for t in a.tracks}
    splits_b = {t["audio_path"]: t["split"] for t in b.tracks}
    assert splits_a != splits_b
    for cache in (a, b):
        train = np.concatenate([cache.load(i, mmap=False).astype(np.float64) for i in cache.indices("train")], axis=1)
        assert cache.stats["mean"] == pytest.approx(train.mean(), rel=1e-9)
        assert cache.stats["std"] == pytest.approx(train.std(), rel=1e-6)
    assert a.stats["mean"] != b.stats["mean"]

    # resume: nothing to do; --overwrite: this dataset's arrays computed again, the other cache still reads
    assert prepare(root / "tempo.toml", workers=0, progress=False).n_resumed == 12 and len(decodes) == 12
    again = prepare(root / "tempo.toml", workers=0, progress=False, overwrite=True)
    assert again.n_computed == 12 and len(decodes) == 24
    np.testing.assert_array_equal(FeatureCache(moods.out_dir).load(0), a.load(0, mmap=False))


def test_an_edited_audio_file_is_decoded_again(corpus, tmp_path, decodes):
    root = tmp_path
    for name in ("moods.toml", "manifest.csv", "tags.txt"):
        shutil.copy(corpus / name, root / name)
    shutil.copytree(corpus / "audio", root / "audio")
    first = prepare(root / "moods.toml", workers=0, progress=False)
    assert len(decodes) == 12
    edited = root / "audio" / "clip_00004.flac"
    make_corpus(tmp_path / "other", n_clips=6, seconds=1.0, seed=99)
    shutil.copyfile(tmp_path / "other" / "audio" / "clip_00004.flac", edited)  # other audio, same path
    second = prepare(root / "moods.toml", workers=0, progress=False)
    assert decodes[12:] == ["clip_00004.flac"] and second.n_computed == 1
    cache = FeatureCache(first.out_dir)
    i = [t["id"] for t in cache.tracks].index("audio/clip_00004")
    fresh = musetag.features.extract_file(edited, cache.feature_config).astype(np.float16)  # the stored dtype
    np.testing.assert_array_equal(cache.load(i), fresh)


def test_cache_made_before_the_store_is_read_and_resumed(corpus, tmp_path, decodes):
    """A cache in the earlier layout (features/<track id>.npy, no "arrays" in cache.json) keeps working."""
    from musetag.data.cache import safe_name

    root = _fresh(corpus, tmp_path)
    out = tmp_path / "old"
    prepare(root / "moods.toml", out, workers=0, progress=False)
    # rewrite it into the earlier layout
    settings = json.loads((out / "cache.json").read_text())
    arrays = out / settings.pop("arrays")
    (out / "cache.json").write_text(json.dumps(settings))
    index = json.loads((out / "index.json").read_text())
    for track in index["tracks"]:
        old = f"features/{safe_name(track['id'])}.npy"
        (out / track["file"]).rename(out / old)
        track["file"] = old
    shutil.rmtree(arrays)
    (out / "index.json").write_text(json.dumps(index))
    lines = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    for entry in lines:
        entry["file"] = f"features/{safe_name(entry['id'])}.npy"
    (out / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines[:-3]))  # 3 not journaled
    before = len(decodes)
    assert len(FeatureCache(out)) == 12
    resumed = prepare(root / "moods.toml", out, workers=0, progress=False)
    assert len(decodes) == before and resumed.n_resumed == 12
    assert all(t["file"].startswith("features/") and "/" not in t["file"][9:] for t in FeatureCache(out).tracks)
    records = load_records(load_dataset_config(root / "moods.toml"))
    assert {t["id"] for t in FeatureCache(out).tracks} == {r.id for r in records}
