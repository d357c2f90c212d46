"""``musetag tag``: real songs plus bad files, kill-and-resume, torn outputs, every output format."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musetag.cli import main
from musetag.tag.writers import read_results
from test_package import TAGS, make_package, tiny_model


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64)


def write_clips(folder: Path, n: int, seconds: float, sr: int = 44100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        t = np.arange(int(seconds * sr)) / sr
        audio = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, audio.astype(np.float32), sr)
        paths.append(path)
    return paths


def rows_by_path(rows):
    out = {}
    for row in rows:
        assert row["path"] not in out, f"duplicate row for {row['path']}"
        out[row["path"]] = row
    return out


@pytest.mark.shared
@pytest.mark.slow
def test_songs_and_bad_files(package, shared_data, tmp_path, capsys):
    songs = sorted(shared_data("jamendo-songs", "mp3").glob("*.mp3"))
    assert len(songs) == 10
    folder = tmp_path / "music"
    folder.mkdir()
    for song in songs:
        (folder / song.name).symlink_to(song)
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "notes.mp3").write_text("these are my notes, not a song\n")
    (folder / "truncated.mp3").write_bytes(songs[0].read_bytes()[:400_000])
    out = tmp_path / "results.csv"

    assert main(["tag", str(package), str(folder), "--out", str(out), "--workers", "2", "--top-k", "3", "--no-progress"]) == 3  # some files failed
    rows = rows_by_path(read_results(out))
    assert len(rows) == 13
    ok = {Path(p).name for p, r in rows.items() if r["status"] == "ok"}
    assert ok == {s.name for s in songs}
    status = {Path(p).name: r["status"] for p, r in rows.items()}
    assert "empty" in status["empty.mp3"]
    assert "text file" in status["notes.mp3"]
    assert "truncated" in status["truncated.mp3"]
    for path, row in rows.items():
        if row["status"] != "ok":
            assert row["scores"] == {} and row["top_tags"] == []
            continue
        assert list(row["scores"]) == TAGS and all(0.0 <= s <= 1.0 for s in row["scores"].values())
        tops = [t["score"] for t in row["top_tags"]]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert 140 < row["duration"] < 200
    assert "10 ok, 3 failed" in capsys.readouterr().err

    # running again skips everything and leaves the file as it was; the 3 error rows still make it a partial run
    before = out.read_bytes()
    assert main(["tag", str(package), str(folder), "--out", str(out), "--workers", "2", "--no-progress"]) == 3
    assert "13 already done, 3 of them failed earlier" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.mark.slow
def test_kill_and_resume_equals_one_run(package, tmp_path):
    folder = tmp_path / "clips"
    clips = write_clips(folder, 30, 8.0)
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "musetag", "tag", str(package), str(folder), "--out", str(out), "--workers", "1",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        lines = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                lines = out.read_bytes().count(b"\n")
                if lines >= 3:
                    break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its decoding worker, mid-run
        proc.wait(30)
        proc.stderr.close()
    assert 3 <= lines < 30, f"the run was not interrupted mid-way ({lines} rows)"
    # a kill in the middle of a write leaves a torn last line: simulate the worst case
    with open(out, "ab") as fh:
        fh.write(b'{"path": "' + str(clips[-1]).encode() + b'", "status": "o')
    done_before = len(read_results(out))

    assert main(["tag", str(package), str(folder), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    once = tmp_path / "once.jsonl"
    assert main(["tag", str(package), str(folder), "--out", str(once), "--workers", "0", "--no-progress"]) == 0

    resumed, single = rows_by_path(read_results(out)), rows_by_path(read_results(once))
    assert len(single) == 30 and resumed.keys() == single.keys()
    assert done_before >= 3
    for path, row in single.items():
        other = resumed[path]
        assert other["status"] == row["status"] == "ok"
        np.testing.assert_allclose(list(other["scores"].values()), list(row["scores"].values()), atol=1e-6)
    for line in out.read_text().splitlines():
        json.loads(line)  # every line whole


def test_torn_csv_resume_json_and_retry_errors(package, tmp_path, capsys):
    folder = tmp_path / "clips"
    clips = write_clips(folder, 3, 2.0, sr=12000)
    missing = folder / "later.wav"
    args = ["tag", str(package), str(folder), str(missing), "--workers", "0", "--no-progress"]

    out = tmp_path / "r.csv"
    assert main([*args, "--out", str(out)]) == 3  # one file missing: some failed
    rows = rows_by_path(read_results(out))
    assert len(rows) == 4 and "not found" in rows[str(missing)]["status"]
    text = out.read_text()
    out.write_text(text[: text.rindex(str(clips[2])) + 12])  # a torn last row
    assert main([*args, "--out", str(out)]) == 3  # the torn tail held the missing file too
    again = rows_by_path(read_results(out))
    assert again.keys() == rows.keys()
    assert out.read_text().endswith("\n") and out.read_text().count("\n") == 5  # header + 4 rows
    np.testing.assert_allclose(
        list(again[str(clips[2])]["scores"].values()), list(rows[str(clips[2])]["scores"].values()), atol=1e-5
    )

    # --retry-errors: the file that was missing now exists and gets tagged
    sf.write(missing, np.zeros(12000, dtype=np.float32), 12000)
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 3  # done rows are kept, and an error row is still a failure
    assert "4 already done, 1 of them failed earlier" in capsys.readouterr().err
    assert "not found" in rows_by_path(read_results(out))[str(missing)]["status"]
    assert main([*args, "--out", str(out), "--retry-errors"]) == 0
    final = rows_by_path(read_results(out))
    assert len(final) == 4 and final[str(missing)]["status"] == "ok"

    js = tmp_path / "r.json"
    assert main([*args, "--out", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["tags"] == TAGS and len(doc["results"]) == 4
    assert doc["model"]["name"] == "simplecnn"
    assert main([*args, "--out", str(js)]) == 0
    assert len(json.loads(js.read_text())["results"]) == 4
    capsys.readouterr()

    # without --out: one line per file on stdout; a package without tuned thresholds says what 'decided' means
    assert main(["tag", str(package), str(clips[0]), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert line.startswith(str(clips[0])) and "\tok\t" in line
    assert "has no tuned per-tag thresholds, so 'decided' lists the tags scoring above 0.5" in captured.err
    assert main(["tag", str(package), str(clips[0]), "--workers", "0", "--threshold", "0.3"]) == 0
    assert "no tuned per-tag thresholds" not in capsys.readouterr().err  # a level the user chose: nothing to say
    # with --out too: the decisions column is as empty as the table's 'decided' would be (it said nothing)
    assert main(["tag", str(package), str(clips[0]), "--workers", "0", "--out", str(tmp_path / "n.csv")]) == 0
    assert "has no tuned per-tag thresholds, so the decisions column lists the tags" in capsys.readouterr().err


def test_cli_errors(package, tmp_path, capsys):
    clip = write_clips(tmp_path / "c", 1, 1.0, sr=12000)[0]
    assert main(["tag", str(package), str(clip), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "use .csv, .json or .jsonl" in capsys.readouterr().err
    assert main(["tag", str(package), str(clip), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "use .csv, .json or .jsonl (.parquet is written by --engine ray)" in capsys.readouterr().err
    assert main(["tag", str(package), str(clip), "--threshold", "tuned"]) == 2
    assert "no tuned thresholds" in capsys.readouterr().err
    # a folder that is no package is audio to tag (with the default pretrained model); named with
    # --model it must be a package
    assert main(["tag", "--model", str(tmp_path), str(clip)]) == 2
    assert "musetag.json is missing" in capsys.readouterr().err
    other = make_package(tmp_path / "other", tags=["x", "y"])
    out = tmp_path / "r.csv"
    assert main(["tag", str(package), str(clip), "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    assert main(["tag", str(other), str(clip), "--out", str(out), "--workers", "0", "--no-progress"]) == 2
    assert "different tags" in capsys.readouterr().err


def test_a_shard_with_no_file_has_nothing_to_do_and_succeeds(package, tmp_path, capsys):
    """With one file and --shard I/2, one shard gets nothing: it said "no audio files found in FOLDER" and
    exited 4, so an array job marked that task failed."""
    from musetag.tag.shard import collect_shard_files

    folder = tmp_path / "clips"
    write_clips(folder, 1, 1.0, sr=12000)
    empty = next(i for i in (1, 2) if not collect_shard_files([str(folder)], f"{i}/2"))
    for out in ([], ["--out", str(tmp_path / "part.csv")]):
        capsys.readouterr()
        assert main(["tag", str(package), str(folder), "--shard", f"{empty}/2", "--workers", "0", "--no-progress",
                     *out]) == 0
        err = capsys.readouterr().err
        assert f"none of the 1 audio file(s) falls in shard {empty}/2" in err and "no audio files found" not in err
    assert (tmp_path / "part.csv").read_text().startswith("path,")  # an empty part merges like any other
    (tmp_path / "none").mkdir()  # a folder without audio is still "nothing found", exit 4
    assert main(["tag", str(package), str(tmp_path / "none"), "--shard", "1/2", "--workers", "0"]) == 4


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json"])
def test_resume_and_merge_refuse_rows_of_another_model_or_threshold(package, tmp_path, capsys, ext):
    """A CSV/JSONL row does not say which model or threshold made it: resuming tags.csv with another model
    of the same tags, or with another --threshold, skipped the files already there and mixed two runs'
    decisions silently, and `merge` joined shards tagged at different thresholds. NAME.EXT.run.json records both."""
    from musetag.tag.run_record import read_run_record, run_record_path
    from musetag.tag.shard import collect_shard_files

    folder = tmp_path / "clips"
    clips = write_clips(folder, 4, 2.0, sr=12000)
    base = ["--workers", "0", "--no-progress"]
    out = tmp_path / f"tags{ext}"
    assert main(["tag", str(package), str(clips[0]), "--out", str(out), "--threshold", "0.3", *base]) == 0
    record = read_run_record(out)
    assert record["decision"] == {"rule": "score > threshold", "threshold": 0.3}
    assert run_record_path(out).name == f"tags{ext}.run.json"  # tags.csv and tags.jsonl keep one each
    capsys.readouterr()
    assert main(["tag", str(package), str(folder), "--out", str(out), *base]) == 2  # default 0.5 now
    err = capsys.readouterr().err
    assert "threshold 0.3" in err and "threshold 0.5" in err and "decision rule" in err and f"tags{ext}.run.json" in err
    assert len(read_results(out)) == 1  # nothing was added or lost
    other = make_package(tmp_path / "other", frames=64, hop=64, model=tiny_model(len(TAGS), seed=1))  # same tags
    assert main(["tag", str(other), str(folder), "--out", str(out), "--threshold", "0.3", *base]) == 2
    assert "another model" in capsys.readouterr().err
    assert main(["tag", str(package), str(folder), "--out", str(out), "--threshold", "0.3", *base]) == 0
    assert len(read_results(out)) == 4

    # shards at different thresholds are not one run; at the same threshold they merge, with the record
    assert all(collect_shard_files([str(folder)], f"{i}/2") for i in (1, 2))  # both parts have files
    parts = [tmp_path / f"part{i}{ext}" for i in (1, 2)]
    for i, (part, level) in enumerate(zip(parts, ("0.3", "0.4")), start=1):
        assert main(["tag", str(package), str(folder), "--shard", f"{i}/2", "--out", str(part), "--threshold", level,
                     *base]) == 0
    capsys.readouterr()
    merged = tmp_path / f"merged{ext}"
    assert main(["merge", *map(str, parts), "--out", str(merged)]) == 2
    assert "not shards of one run" in capsys.readouterr().err and not merged.exists()
    assert main(["tag", str(package), str(folder), "--shard", "2/2", "--out", str(parts[1]), "--threshold", "0.3",
                 *base]) == 2  # resuming part 2 at 0.3 is refused too
    parts[1].unlink()
    run_record_path(parts[1]).unlink()
    assert main(["tag", str(package), str(folder), "--shard", "2/2", "--out", str(parts[1]), "--threshold", "0.3",
                 *base]) == 0
    records = [str(run_record_path(part)) for part in parts]  # what `merge part*.json` also matches
    assert main(["merge", *map(str, parts), *records, "--out", str(merged)]) == 0
    assert read_run_record(merged)["decision"]["threshold"] == 0.3 and len(read_results(merged)) == 4
    sibling = out.with_suffix(".jsonl" if ext != ".jsonl" else ".csv")  # tags.csv and tags.jsonl: two records
    assert main(["tag", str(package), str(clips[0]), "--out", str(sibling), "--threshold", "0.7", *base]) == 0
    assert read_run_record(out)["decision"]["threshold"] == 0.3 and read_run_record(sibling)["decision"]["threshold"] == 0.7
