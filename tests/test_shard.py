"""--shard I/N selection (musetag.tag.shard) and the merge of sharded outputs (musetag.tag.merge, `musetag merge`)."""
from __future__ import annotations

import csv
import hashlib
import json
import unicodedata

import numpy as np
import pytest

from musetag.cli import main
from musetag.errors import ConfigError, DatasetError
from musetag.tag.merge import merge_outputs
from musetag.tag.shard import (
    Shard,
    distributed_shard,
    parse_shard,
    select_shard,
    shard_key,
    shard_output_path,
)

NAMES = [f"artist{i % 37}/album{i % 11}/track {i:04d}.mp3" for i in range(1000)]


def test_parse_shard_is_one_based_and_validated():
    assert parse_shard("1/4") == Shard(index=0, count=4)
    assert parse_shard(" 4/4 ") == Shard(index=3, count=4)
    assert parse_shard(None).is_whole and parse_shard("").is_whole
    for bad in ("0/4", "5/4", "1/0", "a/b", "3", "1/2/3"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)


def test_shards_partition_the_list_exactly_and_evenly():
    parts = [select_shard(NAMES, f"{i}/4") for i in range(1, 5)]
    flat = [n for part in parts for n in part]
    assert sorted(flat) == sorted(NAMES) and len(flat) == len(set(flat))
    for part in parts:  # 250 expected; a binomial(1000, 1/4) stays well inside this band
        assert 180 < len(part) < 320
    # the order within a shard is the input order
    assert parts[0] == [n for n in NAMES if n in set(parts[0])]


def test_shard_of_a_file_depends_only_on_its_key():
    shuffled = list(reversed(NAMES))[:300] + ["new/extra.mp3"]
    mine = set(select_shard(NAMES, "2/5"))
    theirs = set(select_shard(shuffled, "2/5"))
    assert theirs - {"new/extra.mp3"} == mine & set(shuffled)


def test_rule_is_sha1_of_the_relative_path_modulo_n():
    # the documented rule, derived here independently: machines must agree across versions
    for name in NAMES[:50]:
        h = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big")
        assert select_shard([name], f"{h % 7 + 1}/7") == [name]


def test_key_is_relative_to_the_root_and_unicode_normalised(tmp_path):
    a = tmp_path / "mnt1" / "music"
    b = tmp_path / "data" / "catalogue"
    assert shard_key(a / "x" / "Beyoncé.mp3", a) == shard_key(b / "x" / "Beyoncé.mp3", b) == "x/Beyoncé.mp3"
    decomposed = unicodedata.normalize("NFD", "x/Beyoncé.mp3")
    assert shard_key(decomposed) == "x/Beyoncé.mp3"
    assert shard_key("./x//y/../z.mp3") == "x/z.mp3"


def test_torchrun_ranks_split_a_shard_exactly():
    shard = parse_shard("2/3")
    whole = select_shard(NAMES, shard)
    ranks = [select_shard(NAMES, distributed_shard(shard, {"RANK": str(r), "WORLD_SIZE": "4"})) for r in range(4)]
    flat = [n for part in ranks for n in part]
    assert sorted(flat) == sorted(whole) and len(flat) == len(set(flat))
    assert all(len(part) > 0 for part in ranks)
    assert distributed_shard(shard, {}) == shard
    rank1 = distributed_shard(shard, {"RANK": "1", "WORLD_SIZE": "4"})
    assert shard_output_path("out/tags.csv", rank1).name == "tags.shard-0002-of-0003-rank-1-of-4.csv"
    assert shard_output_path("out/tags.csv", shard).name == "tags.csv"


# ------------------------------------------------------------------------------------------ merge

TAGS = ["happy", "sad"]


def _tag_rows(names, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for n in names:
        p = rng.random(2)
        rows.append({"path": n, "status": "ok", "duration": "30.000", "top_tags": "", "decisions": "",
                     "happy": f"{p[0]:.6g}", "sad": f"{p[1]:.6g}"})
    return rows


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path", "status", "duration", "top_tags",
                                                                         "decisions", *TAGS], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_merge_of_sharded_csv_equals_the_single_run(tmp_path):
    names = sorted(NAMES[:60])
    single = _tag_rows(names, 0)
    by_name = {r["path"]: r for r in single}
    parts = []
    for i in range(1, 4):
        part = tmp_path / f"tags.{i}.csv"
        _write_csv(part, [by_name[n] for n in select_shard(names, f"{i}/3")])
        parts.append(part)
    report = merge_outputs(list(reversed(parts)), tmp_path / "merged.csv")
    assert report.rows == 60 and report.identical_duplicates == 0
    assert _read_csv(tmp_path / "merged.csv") == single


def test_merge_jsonl_and_musetag_json_documents(tmp_path):
    rows = [{"path": f"t{i}.mp3", "status": "ok", "scores": {"happy": i / 10}} for i in range(6)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))  # t3 in both, identical
    report = merge_outputs([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "m.jsonl")
    assert report.identical_duplicates == 1
    assert [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()] == rows
    doc = {"model": "m", "tags": TAGS, "results": rows[:2]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "b.json").write_text(json.dumps({**doc, "results": rows[2:]}))
    merge_outputs([tmp_path / "b.json", tmp_path / "a.json"], tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"model": "m", "tags": TAGS, "results": rows}


def test_merge_refuses_conflicting_duplicates_unless_told(tmp_path):
    a, b = _tag_rows(["x.mp3", "y.mp3"], 0), _tag_rows(["y.mp3", "z.mp3"], 1)
    _write_csv(tmp_path / "a.csv", a)
    _write_csv(tmp_path / "b.csv", b)
    with pytest.raises(DatasetError, match="'y.mp3' has different results in .*a.csv and .*b.csv"):
        merge_outputs([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    merge_outputs([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "m.csv", keep="last")
    assert {r["path"]: r["happy"] for r in _read_csv(tmp_path / "m.csv")}["y.mp3"] == b[0]["happy"]
    # the same scores and decisions listed with another --top-k are the same results (they were refused)
    c = [{**r, "top_tags": "happy:0.9000"} for r in a]
    _write_csv(tmp_path / "c.csv", c)
    report = merge_outputs([tmp_path / "a.csv", tmp_path / "c.csv"], tmp_path / "m2.csv")
    assert report.identical_duplicates == 2 and report.rows == 2


def test_outputs_of_two_models_are_not_merged(tmp_path):
    """`merge mood.csv genre.csv` wrote one file with both models' tag columns, each row blank for the other's."""
    a = _tag_rows(["x.mp3"], 0)
    b = [{("rock" if k == "happy" else k): v for k, v in r.items()} for r in _tag_rows(["y.mp3"], 1)]
    _write_csv(tmp_path / "mood.csv", a)
    _write_csv(tmp_path / "genre.csv", b)
    with pytest.raises(DatasetError, match=r"genre.csv and .*mood.csv have different columns .*adds \['rock'\].*"
                                           r"not shards of one run"):
        merge_outputs([tmp_path / "mood.csv", tmp_path / "genre.csv"], tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    rows = [{"path": "t.mp3", "status": "ok", "scores": {"happy": 0.1}},
            {"path": "u.mp3", "status": "ok", "scores": {"rock": 0.2}},
            {"path": "v.mp3", "status": "error: broken", "scores": {}}]
    for name, row in zip("abc", rows):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match="different columns"):
        merge_outputs([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "m.jsonl")
    # a shard holding only failed files has no tag names to compare: it merges
    assert merge_outputs([tmp_path / "a.jsonl", tmp_path / "c.jsonl"], tmp_path / "m.jsonl").rows == 2


def test_a_failure_is_replaced_by_the_success_of_another_shard(tmp_path):
    ok = _tag_rows(["x.mp3"], 0)
    failed = [{**ok[0], "status": "error: cannot decode", "happy": "", "sad": ""}]
    _write_csv(tmp_path / "a.csv", failed)
    _write_csv(tmp_path / "b.csv", ok)
    report = merge_outputs([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "m.csv")
    assert report.failures_replaced == 1
    assert _read_csv(tmp_path / "m.csv") == ok


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_merge_embeddings_with_their_error_lists(tmp_path, ext):
    from musetag.inference.embeddings_file import read_embeddings, side_files, write_embeddings

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    rng = np.random.default_rng(0)
    names = sorted(NAMES[:40])
    vecs = rng.normal(size=(40, 8)).astype(np.float32)
    meta = {"model_sha256": "abc", "dim": 8, "layer": "forward_features"}
    parts = []
    for i in (1, 2):
        keep = [j for j, n in enumerate(names) if n in set(select_shard(names, f"{i}/2"))]
        part = tmp_path / f"emb.{i}{ext}"
        write_embeddings(part, [names[j] for j in keep], vecs[keep], {**meta, "shard": f"{i}/2"})
        parts.append(part)
    with open(side_files(parts[0])["errors"], "w") as f:
        f.write("path,error\nbroken.mp3,cannot decode\n")
    report = merge_outputs(parts[::-1], tmp_path / f"all{ext}")
    table = read_embeddings(tmp_path / f"all{ext}")
    assert table.paths == names and np.array_equal(table.vectors, vecs)
    assert report.errors_rows == 1 and "broken.mp3" in side_files(tmp_path / f"all{ext}")["errors"].read_text()
    other = tmp_path / f"other{ext}"
    write_embeddings(other, ["q.mp3"], vecs[:1], {**meta, "model_sha256": "different"})
    with pytest.raises(DatasetError, match="different models"):
        merge_outputs([parts[0], other], tmp_path / f"bad{ext}")


def test_merge_command(tmp_path, capsys):
    _write_csv(tmp_path / "a.csv", _tag_rows(["x.mp3"], 0))
    _write_csv(tmp_path / "b.csv", _tag_rows(["y.mp3"], 1))
    assert main(["merge", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv")]) == 0
    assert "2 tracks" in capsys.readouterr().out
    assert main(["merge", str(tmp_path / "a.csv"), str(tmp_path / "missing.csv"), "-o", str(tmp_path / "n.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "a.csv"), "-o", str(tmp_path / "n.txt")]) == 2
