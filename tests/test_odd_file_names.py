"""File names that are not UTF-8 (bytes a Linux file system allows, as Python's lone surrogates) and result files
that are not musetag's: written, read back and resumed, never a crash or somebody's file replaced."""
from __future__ import annotations

import json

import numpy as np
import pytest

from musetag.errors import ConfigError
from musetag.tag.writers import ResultWriter, read_results

ODD = "songs/bad\udcff\udcfe.ogg"  # what os.listdir gives for b"bad\xff\xfe.ogg"
TAGS = ["calm", "dark"]


def _row(path: str) -> dict:
    return {"path": path, "status": "ok", "duration": 30.0, "top_tags": [{"tag": "calm", "score": 0.7}],
            "decisions": ["calm"], "warnings": [], "scores": {"calm": 0.7, "dark": 0.2}}


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json"])
def test_a_file_name_that_is_not_utf8_is_written_and_resumed(tmp_path, ext):
    """The writer raised UnicodeEncodeError at that row (a JSON output kept no row at all), and every rerun met the
    same file first: one odd name stopped a whole catalogue."""
    out = tmp_path / f"r{ext}"
    with ResultWriter(out, TAGS) as writer:
        writer.write(_row("songs/good.ogg"))
        writer.write(_row(ODD))
    assert [r["path"] for r in read_results(out, TAGS)] == ["songs/good.ogg", ODD]
    again = ResultWriter(out, TAGS)
    assert again.is_done(ODD) and again.is_done("songs/good.ogg")
    again.close()
    if ext != ".csv":  # JSON text stays UTF-8: the odd bytes as escapes
        out.read_bytes().decode("utf-8")
    else:  # CSV has no escapes: the name's own bytes, as the file system holds them
        assert b"songs/bad\xff\xfe.ogg" in out.read_bytes()


def test_a_jsonl_that_is_not_a_results_file_is_refused_not_replaced(tmp_path, caplog):
    """A CSV or JSON that is not musetag's was refused; a JSONL was silently overwritten."""
    out = tmp_path / "notes.jsonl"
    out.write_text("hello\n{\"a\": 1}\n")
    with pytest.raises(ConfigError, match=r"notes.jsonl is not a musetag JSONL results file \(line 1"):
        ResultWriter(out, TAGS)
    assert out.read_text() == "hello\n{\"a\": 1}\n"
    # a damaged line inside a real results file is dropped with a warning (its file is tagged again)
    good = tmp_path / "r.jsonl"
    good.write_text(json.dumps(_row("a.ogg")) + "\ngarbage\n" + json.dumps(_row("b.ogg")) + "\n")
    with caplog.at_level("WARNING"):
        assert [r["path"] for r in read_results(good, TAGS)] == ["a.ogg", "b.ogg"]
    assert "1 line(s) that are not result rows (first: line 2)" in caplog.text


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_embeddings_of_a_file_name_that_is_not_utf8(tmp_path, ext):
    """`musetag embed` embedded every file, then crashed writing the file (and left its .partial folder)."""
    from musetag.inference.embeddings_file import read_embeddings, write_embeddings

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    out = write_embeddings(tmp_path / f"e{ext}", ["songs/good.ogg", ODD], np.eye(2, 3, dtype=np.float32), {})
    paths = read_embeddings(out).paths
    # .npy keeps the name exactly; Parquet strings are UTF-8, so the odd bytes become \xff escapes
    assert paths == ["songs/good.ogg", ODD if ext == ".npy" else "songs/bad\\xff\\xfe.ogg"]


def test_a_mood_search_over_results_with_an_odd_name_reads_them(tmp_path):
    """`musetag similar RESULTS.csv --tags ...` failed to read a results file holding a name that is not UTF-8."""
    from musetag.tag.similarity import read_tag_scores

    out = tmp_path / "r.csv"
    with ResultWriter(out, TAGS) as writer:
        writer.write(_row("songs/good.ogg"))
        writer.write(_row(ODD))
    paths, tags, scores = read_tag_scores(out)
    assert paths == ["songs/good.ogg", "songs/bad\\xff\\xfe.ogg"] and tags == TAGS and scores.shape == (2, 2)


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json"])
def test_shards_holding_an_odd_name_merge_and_resume(tmp_path, ext):
    """`musetag merge` of --shard outputs read them as strict UTF-8 (CSV: 'save the file as UTF-8 (iconv ...)',
    which would have changed the stored name) or crashed writing JSON with a lone surrogate."""
    from musetag.cli import main

    parts = [tmp_path / f"s0{ext}", tmp_path / f"s1{ext}"]
    with ResultWriter(parts[0], TAGS) as writer:
        writer.write(_row("songs/good.ogg"))
        writer.write(_row(ODD))
    with ResultWriter(parts[1], TAGS) as writer:
        writer.write(_row("songs/other.ogg"))
    out = tmp_path / f"all{ext}"
    assert main(["merge", *map(str, parts), "--out", str(out)]) == 0
    assert sorted(r["path"] for r in read_results(out, TAGS)) == sorted(["songs/good.ogg", ODD, "songs/other.ogg"])
    assert ResultWriter(out, TAGS).is_done(ODD)


def test_a_jsonl_saved_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(_row("a.ogg")) + "\n", encoding="utf-8-sig")
    assert [r["path"] for r in read_results(out, TAGS)] == ["a.ogg"]  # it was refused as "not a musetag JSONL"


def test_thresholds_of_tags_sharing_a_name_across_categories_are_matched_exactly(tmp_path):
    from musetag.evaluate.thresholds import thresholds_for

    (tmp_path / "th.txt").write_text("mood---x\t0.4\ngenre---x\t0.3\n")
    assert thresholds_for(tmp_path / "th.txt", ["genre---x", "mood---x"]).tolist() == [0.3, 0.4]
