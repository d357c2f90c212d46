"""Similarity search over embeddings and mood search over tag scores (musetag.tag.similarity)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from musetag.errors import ConfigError, DatasetError
from musetag.tag.similarity import MoodIndex, SimilarityIndex, available_backends, read_tag_scores


def clustered(rng, n=600, dim=16, clusters=12):
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    vecs = centres[labels] + 0.3 * rng.normal(size=(n, dim))
    return vecs.astype(np.float32), labels, [f"track{i:05d}.mp3" for i in range(n)]


def test_exact_search_matches_a_brute_force_peer(rng):
    vecs, _, names = clustered(rng)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    index = SimilarityIndex(vecs, names, backend="exact")
    peer = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(vecs)
    dist, idx = peer.kneighbors(queries)
    results = index.search(queries, k=10)
    for row, (d, i) in enumerate(zip(dist, idx)):
        assert [m.path for m in results[row]] == [names[j] for j in i]
        np.testing.assert_allclose([m.score for m in results[row]], 1 - d, atol=1e-5)
        assert [m.rank for m in results[row]] == list(range(1, 11))
    # a single vector gives a flat list; blocked search (small blocks) gives the same answer
    single = index.search(queries[0], k=10)
    assert [m.path for m in single] == [m.path for m in results[0]]
    assert index._exact(queries, 10, block=7)[0].tolist() == index._exact(queries, 10)[0].tolist()


def test_neighbours_of_an_indexed_track_share_its_cluster(rng):
    vecs, labels, names = clustered(rng)
    index = SimilarityIndex(vecs, names)
    assert index.backend == "exact"
    matches = index.search_track(names[3], k=5)
    assert names[3] not in [m.path for m in matches] and len(matches) == 5
    assert all(labels[names.index(m.path)] == labels[3] for m in matches)
    with pytest.raises(DatasetError, match="not in the index"):
        index.search_track("nope.mp3")


def test_save_and_load_round_trip(tmp_path, rng):
    vecs, _, names = clustered(rng, n=50)
    index = SimilarityIndex(vecs, names, meta={"model": "m"})
    index.save(tmp_path / "idx")
    again = SimilarityIndex.load(tmp_path / "idx")
    assert again.paths == names and again.meta == {"model": "m"}
    assert again.search(vecs[0], 3) == index.search(vecs[0], 3)


def test_bad_inputs_say_what_to_do(rng):
    vecs, _, names = clustered(rng, n=20)
    with pytest.raises(DatasetError, match="20 vectors but 19"):
        SimilarityIndex(vecs, names[:-1])
    bad = vecs.copy()
    bad[4, 2] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        SimilarityIndex(bad, names)
    index = SimilarityIndex(vecs, names)
    with pytest.raises(DatasetError, match="model that built the index"):
        index.search(np.ones(5), k=3)
    with pytest.raises(ConfigError, match="backend"):
        SimilarityIndex(vecs, names, backend="annoy")
    if "hnswlib" not in available_backends():
        with pytest.raises(ConfigError, match="pip install hnswlib"):
            SimilarityIndex(vecs, names, backend="hnswlib")


def test_an_index_that_is_not_one_is_named_as_the_index(tmp_path, capsys):
    """`similar song.mp3 other.flac` (audio where the index goes) blamed a "--out" the user never gave."""
    from musetag.cli import main

    song = tmp_path / "song.mp3"
    song.write_bytes(b"")
    assert main(["similar", str(song), str(song)]) == 2
    err = capsys.readouterr().err
    assert f"error: {song}: an embeddings index is a .npy file" in err and "error: --out" not in err


@pytest.mark.parametrize("backend", ["faiss", "hnswlib"])
def test_ann_backends_agree_with_exact_search(tmp_path, rng, backend):
    pytest.importorskip(backend)
    vecs, _, names = clustered(rng, n=2000, dim=32, clusters=40)
    queries = vecs[:20] + 0.05 * rng.normal(size=(20, 32)).astype(np.float32)
    exact = SimilarityIndex(vecs, names, backend="exact").search(queries, k=10)
    ann = SimilarityIndex(vecs, names, backend=backend)
    approx = ann.search(queries, k=10)
    recall = np.mean([len({m.path for m in a} & {m.path for m in e}) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.9
    ann.save(tmp_path / "ann")
    loaded = SimilarityIndex.load(tmp_path / "ann")
    assert loaded.backend == backend
    assert [m.path for m in loaded.search(queries[0], 10)] == [m.path for m in approx[0]]


TAGS = ["mood/theme---happy", "mood/theme---sad", "mood/theme---film"]


def mood_scores(rng, n=200):
    scores = rng.uniform(0.0, 0.2, size=(n, 3))
    scores[:, 2] += 0.7  # "film" scores high on every track: a popular tag
    scores[:10, 0] = 0.9  # ten clearly happy tracks
    scores[10:20, 1] = 0.9  # ten clearly sad ones
    return scores.astype(np.float32), [f"t{i:03d}.mp3" for i in range(n)]


def test_mood_search_by_tags_finds_the_tracks_of_that_mood(rng):
    scores, names = mood_scores(rng)
    moods = MoodIndex(scores, names, TAGS)
    assert {m.path for m in moods.search_tags("happy", k=10)} == set(names[:10])
    assert {m.path for m in moods.search_tags({"mood/theme---sad": 1.0}, k=10)} == set(names[10:20])
    # "happy but not sad": still the happy ones, negative weights are allowed
    assert {m.path for m in moods.search_tags({"happy": 1.0, "sad": -1.0}, k=10)} == set(names[:10])
    with pytest.raises(ConfigError, match="unknown tag 'joyful'"):
        moods.search_tags("joyful")


def test_mood_search_by_a_score_vector_finds_tracks_of_the_same_mood(rng):
    scores, names = mood_scores(rng)
    moods = MoodIndex(scores, names, TAGS)
    query = np.array([0.85, 0.1, 0.8], np.float32)  # a happy track, tagged by the same model
    found = [m.path for m in moods.search_scores(query, k=10)]
    assert set(found) == set(names[:10])
    assert {m.path for m in moods.search_track(names[12], k=9)} == set(names[10:20]) - {names[12]}


def test_tag_scores_are_read_from_a_musetag_tag_csv(tmp_path, rng):
    scores, names = mood_scores(rng, n=5)
    path = tmp_path / "tags.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "status", "duration", "top_tags", "decisions", *TAGS])
        for n, s in zip(names, scores):
            w.writerow([n, "ok", "30.0", "", "", *(f"{x:.6g}" for x in s)])
        w.writerow(["broken.mp3", "error: cannot decode", "", "", "", "", "", ""])
    paths, tags, table = read_tag_scores(path)
    assert paths == names and tags == TAGS
    np.testing.assert_allclose(table, scores, rtol=1e-5)
    assert MoodIndex.from_file(path).search_tags("sad", k=1)[0].path == names[int(np.argmax(scores[:, 1]))]


def test_all_zero_tag_weights_are_refused_not_scored_nan(tmp_path, rng, capsys):
    """`similar RESULTS --tags happy:0` divided by a zero weight sum: a numpy warning and rows scored nan, exit 0."""
    from musetag.cli import main
    from musetag.tag.similarity import parse_tag_weights

    scores, names = mood_scores(rng)
    moods = MoodIndex(scores, names, TAGS)
    for weights in ({"happy": 0.0}, {"happy": 1.0, "mood/theme---happy": -1.0}):
        with pytest.raises(ConfigError, match="the tag weights are all zero.*give at least one non-zero weight"):
            moods.search_tags(weights)
    with pytest.raises(ConfigError, match="'nan' of 'happy' is not a finite number"):
        parse_tag_weights("happy:nan")
    path = tmp_path / "tags.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "status", *TAGS])
        w.writerows([n, "ok", *(f"{x:.6g}" for x in s)] for n, s in zip(names, scores))
    assert main(["similar", str(path), "--tags", "happy:0", "--k", "3"]) == 2
    out, err = capsys.readouterr()
    assert "the tag weights are all zero" in err and "nan" not in out + err and "warning" not in err


def write_scored_embeddings(out, rng, scores, names, dim=8):
    """An embeddings file as `musetag embed --with-scores` writes it: the vector, then the tag scores."""
    from musetag.inference.embeddings_file import write_embeddings

    vectors = np.concatenate([rng.normal(size=(len(names), dim)), scores], axis=1)
    return write_embeddings(out, names, vectors, {"model": "m", "scores": True, "feature_dim": dim, "score_tags": TAGS})


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_mood_search_reads_the_tag_scores_of_an_embeddings_file_with_scores(tmp_path, rng, ext, capsys):
    """`similar EMB --tags happy` on `embed --with-scores` output said "tag scores must be .csv..." (.npy) or "no
    numeric tag-score columns" (.parquet), though the file holds the scores and its metadata names them."""
    from musetag.cli import main

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    scores, names = mood_scores(rng, n=40)
    path = write_scored_embeddings(tmp_path / f"ws{ext}", rng, scores, names)
    paths, tags, table = read_tag_scores(path)
    assert paths == names and tags == TAGS
    np.testing.assert_allclose(table, scores, rtol=1e-6)
    assert main(["similar", str(path), "--tags", "happy", "--k", "10", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert {r["path"] for r in rows} == set(names[:10])


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_mood_search_on_embeddings_without_scores_says_which_file_to_give(tmp_path, rng, ext, capsys):
    from musetag.cli import main
    from musetag.inference.embeddings_file import write_embeddings

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    path = write_embeddings(tmp_path / f"plain{ext}", ["a.mp3", "b.mp3"], rng.normal(size=(2, 4)), {"model": "m"})
    with pytest.raises(DatasetError, match=r"is an embeddings file .* without tag scores.*--out scores\.csv"):
        read_tag_scores(path)
    assert main(["similar", str(path), "--tags", "happy"]) == 2
    err = capsys.readouterr().err
    assert f"{path} is an embeddings file" in err and "must be .csv" not in err and "no numeric" not in err
