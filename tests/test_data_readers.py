"""Corpus readers on the real shared metadata (skipped when absent) and on small files written here."""
from __future__ import annotations

import collections
import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from musetag.data import TagVocab, TrackRecord, load_dataset_config, load_records
from musetag.data.datasets.fma import audio_path as fma_audio_path
from musetag.data.datasets.fma import read_fma
from musetag.data.datasets.gtzan import read_gtzan
from musetag.data.datasets.jamendo import read_jamendo_split, read_jamendo_tsv
from musetag.data.manifest import check_group_disjoint, group_overlap, seeded_split
from musetag.errors import ConfigError, DatasetError


# --- MTG-Jamendo ---------------------------------------------------------------------------------

def test_jamendo_split0_moodtheme_counts_and_tags():
    splits = shared_path("mtg-jamendo", "splits")
    official = TagVocab.from_file(shared_path("mtg-jamendo", "tags", "moodtheme_split.txt"))
    records = read_jamendo_split(splits, "moodtheme", 0)
    counts = collections.Counter(r.split for r in records)
    assert (counts["train"], counts["validation"], counts["test"]) == (9949, 3802, 4231)
    tags = sorted({t for r in records for t in r.tags})
    assert len(tags) == 56
    assert tags == list(official.tags)  # prefix removed, same 56 names, official (alphabetical) order
    assert all("---" not in t for t in tags)
    assert not group_overlap(records, "train", "test")
    # the CRLF line end never leaks into the last tag of a row
    assert all(not t.endswith("\r") for r in records for t in r.tags)


def test_jamendo_groundtruth_matches_official_matrix():
    """Encoding the test split reproduces the organisers' ground-truth matrix (rows in file order)."""
    gt = np.load(shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy"))
    vocab = TagVocab.from_file(shared_path("mtg-jamendo", "tags", "moodtheme_split.txt"))
    records = [r for r in read_jamendo_split(shared_path("mtg-jamendo", "splits"), "moodtheme", 0) if r.split == "test"]
    np.testing.assert_array_equal(vocab.encode_many(r.tags for r in records).astype(bool), gt)


@pytest.mark.parametrize("subset", ["genre", "instrument"])
def test_jamendo_genre_and_instrument_files_parse(subset):
    records = read_jamendo_split(shared_path("mtg-jamendo", "splits"), subset, 0)
    assert len(records) > 10000
    assert {r.split for r in records} == {"train", "validation", "test"}
    assert all(r.tags and all("---" not in t for t in r.tags) for r in records)


def test_jamendo_full_file_paths_and_multi_tag_rows(tmp_path):
    records = read_jamendo_tsv(shared_path("mtg-jamendo", "autotagging_moodtheme.tsv"),
                               audio_root=tmp_path / "audio", melspec_root=tmp_path / "mel")
    assert len(records) == 18486
    assert len({t for r in records for t in r.tags}) == 59
    first = records[0]
    assert first.audio_path == tmp_path / "audio" / "48" / "948.mp3"
    assert first.feature_path == tmp_path / "mel" / "48" / "948.npy"
    assert max(len(r.tags) for r in records) > 3


def test_jamendo_artist_overlap_is_detected(tmp_path):
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\n"
    rows = {
        "train": ["track_1\tartist_1\talbum_1\t01/1.mp3\t100.0\tmood/theme---happy\tmood/theme---fun"],
        "validation": ["track_2\tartist_2\talbum_2\t02/2.mp3\t100.0\tmood/theme---sad"],
        "test": ["track_3\tartist_1\talbum_3\t03/3.mp3\t100.0\tmood/theme---sad"],
    }
    folder = tmp_path / "split-0"
    folder.mkdir()
    for part, lines in rows.items():
        (folder / f"autotagging_moodtheme-{part}.tsv").write_bytes((header + "\r\n".join(lines) + "\r\n").encode())
    with pytest.raises(DatasetError, match="artist"):
        read_jamendo_split(tmp_path, "moodtheme", 0)
    records = read_jamendo_split(tmp_path, "moodtheme", 0, check_artists=False)
    assert records[0].tags == ("happy", "fun")


def test_jamendo_bad_header_names_the_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id,artist\n1,2\n")
    with pytest.raises(DatasetError, match="bad.tsv.*TRACK_ID"):
        read_jamendo_tsv(bad)


# --- GTZAN ---------------------------------------------------------------------------------------

def test_gtzan3_reader_and_seeded_stratified_split(tmp_path):
    root = shared_path("gtzan3")
    records = read_gtzan(root)
    assert len(records) == 299
    assert collections.Counter(r.tags[0] for r in records) == {"classical": 100, "jazz": 99, "rock": 100}
    assert all(r.audio_path.suffix == ".mp3" for r in records)
    # labels.csv agrees with the folders
    with open(root / "labels.csv", newline="") as handle:
        labelled = {Path(row["path"]).stem: row["genre"] for row in csv.DictReader(handle)}
    assert labelled == {r.id: r.tags[0] for r in records}

    toml = tmp_path / "gtzan3.toml"
    toml.write_text(f'reader = "gtzan"\ntask = "multiclass"\npreset = "fusion64"\n[paths]\nroot = "{root}"\n'
                    "[split]\nseed = 3\n")
    split = load_records(load_dataset_config(toml))
    per = collections.Counter((r.split, r.tags[0]) for r in split)
    assert per[("train", "classical")] == 80 and per[("validation", "classical")] == 10
    assert per[("test", "classical")] == 10
    assert per[("train", "jazz")] + per[("validation", "jazz")] + per[("test", "jazz")] == 99
    assert [r.split for r in split] == [r.split for r in load_records(load_dataset_config(toml))]


def test_gtzan_split_lists(tmp_path):
    root = tmp_path / "genres"
    for genre in ("blues", "pop"):
        (root / genre).mkdir(parents=True)
        for i in range(3):
            (root / genre / f"{genre}.{i:05d}.wav").write_bytes(b"")
    lists = {}
    for split, names in (("train", ["blues/blues.00000.wav", "pop/pop.00000.wav"]),
                         ("validation", ["blues/blues.00001.wav"]), ("test", ["pop/pop.00002.wav"])):
        lists[split] = tmp_path / f"{split}_filtered.txt"
        lists[split].write_text("\n".join(names) + "\n")
    records = read_gtzan(root, split_lists=lists)
    assert {r.id: r.split for r in records} == {
        "blues.00000": "train", "pop.00000": "train", "blues.00001": "validation", "pop.00002": "test"}
    lists["test"].write_text("rock/rock.00001.wav\n")
    with pytest.raises(DatasetError, match="rock.00001"):
        read_gtzan(root, split_lists=lists)


# --- FMA -----------------------------------------------------------------------------------------

# The real tracks.csv layout: two header rows (category, field) and a third row naming the index.
FMA_COLUMNS = {
    "album": ["comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
              "listens", "producer", "tags", "title", "tracks", "type"],
    "artist": ["active_year_begin", "active_year_end", "associated_labels", "bio", "comments", "date_created",
               "favorites", "id", "latitude", "location", "longitude", "members", "name", "related_projects",
               "tags", "website", "wikipedia_page"],
    "set": ["split", "subset"],
    "track": ["bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
              "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
              "listens", "lyricist", "number", "publisher", "tags", "title"],
}


def write_fma_tracks(path: Path, rows: list[dict]) -> None:
    cols = [(cat, name) for cat, names in FMA_COLUMNS.items() for name in names]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([""] + [c for c, _ in cols])
        writer.writerow([""] + [n for _, n in cols])
        writer.writerow(["track_id"] + [""] * len(cols))
        for row in rows:
            values = {("artist", "bio"): "<p>A bio, with a comma\nand a new line</p>", ("track", "tags"): "[]",
                      ("album", "tags"): "[]", ("artist", "tags"): "[]"}
            values.update(row["values"])
            writer.writerow([row["id"]] + [values.get(c, "") for c in cols])


def _fma_row(tid, subset, split, top, genres, all_genres, artist):
    return {"id": tid, "values": {("set", "subset"): subset, ("set", "split"): split, ("track", "genre_top"): top,
                                  ("track", "genres"): str(genres), ("track", "genres_all"): str(all_genres),
                                  ("artist", "id"): artist, ("track", "duration"): 30}}


def test_fma_reader_two_row_header(tmp_path, caplog):
    tracks = tmp_path / "tracks.csv"
    write_fma_tracks(tracks, [
        _fma_row(2, "small", "training", "Hip-Hop", [21], [21], 1),
        _fma_row(5, "small", "validation", "Hip-Hop", [21], [21], 1),
        _fma_row(140, "small", "test", "Folk", [17], [17], 2),
        _fma_row(99134, "small", "training", "Rock", [12], [12], 3),  # known broken
        _fma_row(3, "medium", "training", "Rock", [25], [25, 12], 4),
        _fma_row(20, "large", "training", "", [76, 103], [76, 103, 2], 5),
    ])
    genres = tmp_path / "genres.csv"
    genres.write_text("genre_id,#tracks,parent,title,top_level\n2,5,0,International,2\n12,10,0,Rock,12\n"
                      "17,3,0,Folk,17\n21,4,0,Hip-Hop,21\n25,1,12,Punk,12\n76,1,2,Experimental Pop,2\n"
                      "103,1,17,Singer-Songwriter,17\n")
    with caplog.at_level(logging.WARNING):
        small = read_fma(tracks, subset="small", audio_root=tmp_path)
    assert "099134" in caplog.text
    assert [(r.id, r.tags, r.split, r.group) for r in small] == [
        ("000002", ("Hip-Hop",), "train", "1"), ("000005", ("Hip-Hop",), "validation", "1"),
        ("000140", ("Folk",), "test", "2")]
    assert small[2].audio_path == tmp_path / "fma_small" / "000" / "000140.mp3"
    assert small[0].duration == 30.0
    medium = read_fma(tracks, subset="medium")
    assert [r.id for r in medium] == ["000002", "000005", "000140", "000003"]  # file order
    large_all = read_fma(tracks, subset="large", labels="genres_all", genres_csv=genres)
    assert dict((r.id, r.tags) for r in large_all)["000020"] == ("Experimental Pop", "Singer-Songwriter", "International")
    assert len(read_fma(tracks, subset="large")) == 4  # track 20 has no genre_top
    assert fma_audio_path(tmp_path / "fma_large", 123456) == tmp_path / "fma_large" / "123" / "123456.mp3"


def test_fma_missing_column_is_clear(tmp_path):
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("track_id,title\n1,x\n")
    with pytest.raises(DatasetError, match="tracks.csv"):
        read_fma(tracks)


# --- CSV manifest, config, splitting ---------------------------------------------------------------

def _touch(folder: Path, names):
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"")


def test_csv_manifest_group_aware_stratified_split(tmp_path):
    rng = np.random.default_rng(0)
    rows, names = [], []
    for i in range(120):
        name = f"audio/{i:03d}.wav"
        names.append(name)
        tags = ";".join(t for t in ("calm", "happy", "dark") if rng.random() < 0.4) or "calm"
        rows.append(f"{name},{tags},artist{i // 4}")
    _touch(tmp_path, names)
    (tmp_path / "music.csv").write_text("path,tags,group\n" + "\n".join(rows) + "\n")
    (tmp_path / "data.toml").write_text('reader = "csv"\npreset = "jamendo96"\n[paths]\nmanifest = "music.csv"\n')
    records = load_records(load_dataset_config(tmp_path / "data.toml"))
    check_group_disjoint(records, (("train", "test"), ("train", "validation"), ("validation", "test")))
    counts = collections.Counter(r.split for r in records)
    assert 85 <= counts["train"] <= 104 and counts["validation"] >= 8 and counts["test"] >= 8
    for tag in ("calm", "happy", "dark"):
        share = sum(tag in r.tags for r in records if r.split == "train") / sum(tag in r.tags for r in records)
        assert 0.65 < share < 0.95, tag
    assert records[0].audio_path == tmp_path / "audio" / "000.wav"


def test_csv_manifest_errors_name_file_and_fix(tmp_path):
    _touch(tmp_path, ["a.wav"])
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,tags\na.wav,x\n")
    with pytest.raises(DatasetError, match=r"m.csv: missing column\(s\) path"):
        read_manifest_via_config(tmp_path, manifest)
    manifest.write_text("path,tags\na.wav,x\nmissing.wav,y\n")
    with pytest.raises(DatasetError, match="missing.wav"):
        read_manifest_via_config(tmp_path, manifest)
    manifest.write_text("path,tags,split\na.wav,x,holdout\n")
    with pytest.raises(DatasetError, match="m.csv:2.*holdout"):
        read_manifest_via_config(tmp_path, manifest)
    manifest.write_text("path,tags\na.wav,x;y\n")
    with pytest.raises(DatasetError, match="multiclass"):
        read_manifest_via_config(tmp_path, manifest, task="multiclass")
    (tmp_path / "tags.txt").write_text("x\n")
    manifest.write_text("path,tags\na.wav,zzz\n")
    with pytest.raises(DatasetError, match="'zzz'.*not in the vocabulary"):
        read_manifest_via_config(tmp_path, manifest, extra='tags = "tags.txt"\n')


def read_manifest_via_config(folder, manifest, task="multilabel", extra=""):
    toml = folder / "d.toml"
    toml.write_text(f'reader = "csv"\ntask = "{task}"\npreset = "jamendo96"\n{extra}[paths]\nmanifest = "{manifest.name}"\n')
    return load_records(load_dataset_config(toml))


def test_config_errors(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text('reader = "nope"\n')
    with pytest.raises(ConfigError, match="d.toml.*reader = 'nope'"):
        load_dataset_config(toml)
    toml.write_text('reader = "gtzan"\n[paths]\nroot = "x"\nmanifest = "y"\n')
    with pytest.raises(ConfigError, match="does not use paths.*manifest"):
        load_dataset_config(toml)
    toml.write_text('reader = "csv"\n[paths]\nmanifest = "m.csv"\n[options]\nsubset = "x"\n')
    with pytest.raises(ConfigError, match="no option"):
        load_dataset_config(toml)
    toml.write_text('reader = "csv"\n[paths]\nmanifest = "m.csv"\n[split]\nfractions = [0.5, 0.1]\n')
    with pytest.raises(ConfigError, match="fractions"):
        load_dataset_config(toml)
    toml.write_text("reader = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_dataset_config(toml)
    with pytest.raises(ConfigError, match="not found"):
        load_dataset_config(tmp_path / "absent.toml")


def test_jamendo_config_resolves_relative_paths(tmp_path):
    splits = shared_path("mtg-jamendo", "splits")
    toml = tmp_path / "jamendo.toml"
    toml.write_text(f'reader = "jamendo"\npreset = "jamendo96"\ntags = "{splits.parent / "tags" / "moodtheme_split.txt"}"\n'
                    f'[paths]\nsplits_dir = "{splits}"\nmelspec_root = "mel"\n[options]\nsubset = "moodtheme"\nsplit = 0\n')
    (tmp_path / "mel").mkdir()
    config = load_dataset_config(toml)
    assert config.paths["melspec_root"] == tmp_path / "mel"
    records = load_records(config)
    assert len(records) == 9949 + 3802 + 4231
    assert records[0].feature_path.parent.parent == tmp_path / "mel"


def test_seeded_split_single_label_exact_and_reproducible():
    records = [TrackRecord(id=str(i), tags=("a" if i < 50 else "b",)) for i in range(70)]
    one = seeded_split(records, seed=1)
    assert [r.split for r in one] == [r.split for r in seeded_split(records, seed=1)]
    assert [r.split for r in one] != [r.split for r in seeded_split(records, seed=2)]
    per = collections.Counter((r.split, r.tags[0]) for r in one)
    assert (per[("train", "a")], per[("validation", "a")], per[("test", "a")]) == (40, 5, 5)
    assert (per[("train", "b")], per[("validation", "b")], per[("test", "b")]) == (16, 2, 2)


def test_tag_vocab_roundtrip():
    vocab = TagVocab(["calm", "dark", "happy"])
    np.testing.assert_array_equal(vocab.encode(["happy", "calm"]), [1, 0, 1])
    assert vocab.decode([0.9, 0.1, 0.6], threshold=[0.95, 0.5, 0.5]) == ["happy"]
    assert vocab.encode_class(["dark"]) == 1
    with pytest.raises(DatasetError, match="unknown tag 'sad'"):
        vocab.encode(["sad"])
