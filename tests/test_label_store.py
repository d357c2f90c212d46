"""The labels file of a labelling project: append-only, fsynced, latest wins, undo, two writers."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from musetag.errors import DatasetError
from musetag.tag import label_store
from musetag.tag.label_store import FIELDS, LabelStore


def test_latest_label_wins_and_every_line_is_kept(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    store.label("a.mp3", ["calm"], "ann")
    store.label("b.mp3", [], "ann")  # none of the tags: a negative for every tag
    store.label("a.mp3", ["calm", "sad"], "ann")  # an edit is a new line
    assert store.state() == {"a.mp3": ("calm", "sad"), "b.mp3": ()}
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    assert lines[0] == ",".join(FIELDS)
    assert len(lines) == 4 and lines[1].startswith("a.mp3,calm,") and lines[3].startswith('a.mp3,calm;sad,')
    # reopening replays the same state
    assert LabelStore(tmp_path / "labels.csv").state() == {"a.mp3": ("calm", "sad"), "b.mp3": ()}


def test_undo_reverts_to_previous_label_then_unlabelled(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    store.label("a.mp3", ["calm"], "ann")
    store.label("b.mp3", ["sad"], "other")
    store.label("a.mp3", ["sad"], "ann")
    assert store.undo("ann").path == "a.mp3"
    assert store.state() == {"a.mp3": ("calm",), "b.mp3": ("sad",)}
    assert store.undo("ann").path == "a.mp3"
    assert store.state() == {"b.mp3": ("sad",)}  # the other annotator's label is untouched
    assert store.undo("ann") is None
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 6  # undo lines appended, none removed
    assert LabelStore(tmp_path / "labels.csv").state() == {"b.mp3": ("sad",)}


def test_the_same_label_pressed_twice_is_one_line_and_one_undo(tmp_path):
    """Enter pressed four times fast wrote four identical lines, and U then seemed to do nothing (it revoked
    one copy, the next copy still stood)."""
    store = LabelStore(tmp_path / "labels.csv")
    store.label("a.mp3", ["calm"], "ann")
    for _ in range(3):
        assert store.label("a.mp3", ["calm"], "ann").path == "a.mp3"
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 2
    store.label("a.mp3", ["calm"], "other")  # another annotator's label is its own line
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 3
    assert store.undo("ann").path == "a.mp3" and store.undo("other").path == "a.mp3"
    assert store.state() == {}
    store.label("a.mp3", ["calm"], "ann")
    store.label("b.mp3", ["sad"], "ann")
    store.label("a.mp3", ["calm"], "ann")  # the same as an older label, not the newest: a new line (it is news)
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 8


def test_each_append_is_fsynced_before_returning(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(label_store.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                             real(fd)))
    store = LabelStore(tmp_path / "labels.csv")
    synced.clear()
    store.label("a.mp3", ["calm"], "ann")
    assert synced == [str(tmp_path / "labels.csv")]


def test_a_torn_line_is_skipped_and_never_swallows_the_next_and_a_bad_file_refused(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("a.mp3", ["calm"], "")
    with open(path, "a") as handle:
        handle.write("b.mp3,sa")  # a writer killed mid-line
    assert store.state() == {"a.mp3": ("calm",)}
    store.label("c.mp3", ["sad"], "")  # the next append closes the torn line first
    assert store.state() == {"a.mp3": ("calm",), "c.mp3": ("sad",)}
    assert LabelStore(path).undo("").path == "c.mp3"
    assert store.state() == {"a.mp3": ("calm",)}
    bad = tmp_path / "other.csv"
    bad.write_text("path,genre\nx,y\n")
    with pytest.raises(DatasetError, match="other.csv: not a labels file"):
        LabelStore(bad).state()


def _writer(path: str, who: str, n: int) -> None:
    store = LabelStore(path)
    for i in range(n):
        store.label(f"{who}-{i}.mp3", ["calm"] if i % 2 else [], who)


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "labels.csv")
    LabelStore(path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, who, 200)) for who in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    state = LabelStore(path).state()
    assert len(state) == 400
    assert state["x-199.mp3"] == ("calm",) and state["y-0.mp3"] == ()


@pytest.mark.parametrize("name, message", [
    ("a\ud800", "not a printable character"),  # a JSON "\ud800": UTF-8 cannot write it (it was a 500)
    ("a\x00b", "not a printable character"), ("two\nlines", "not a printable character"),
    ("x" * 101, "at most 100"),
])
def test_annotator_names_are_checked_before_anything_is_written(tmp_path, name, message):
    from musetag.errors import ConfigError

    store = LabelStore(tmp_path / "labels.csv")
    store.label("a.wav", ("calm",), "Zoë Ann-Marie")
    before = (tmp_path / "labels.csv").read_bytes()
    for act in (lambda: store.label("b.wav", ("calm",), name), lambda: store.undo(name)):
        with pytest.raises(ConfigError, match=message):
            act()
    assert (tmp_path / "labels.csv").read_bytes() == before
    assert store.state() == {"a.wav": ("calm",)}


def _rows_parsed(monkeypatch) -> list[int]:
    """Counts the CSV rows the store parses (wraps the module's csv.reader)."""
    parsed = [0]
    real = label_store.csv.reader

    def counting(*args, **kwargs):
        for row in real(*args, **kwargs):
            parsed[0] += 1
            yield row

    monkeypatch.setattr(label_store.csv, "reader", counting)
    return parsed


def test_a_click_reads_only_the_lines_appended_since_the_last_one(tmp_path, monkeypatch):
    """Each label and each state replayed the whole file (twice per click on the page): quadratic in the
    labels of a session. Now only new lines are parsed, and the state equals a fresh replay."""
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    for i in range(300):
        store.label(f"{i % 120}.mp3", ["calm"] if i % 3 else [], "ann")
    store.undo("ann")
    assert store.state() == LabelStore(path).state()
    parsed = _rows_parsed(monkeypatch)
    store.label("new.mp3", ["sad"], "ann")  # reads nothing new, appends one line
    state = store.state()  # parses that one line
    assert parsed[0] == 1 and state["new.mp3"] == ("sad",) and len(state) == 121
    monkeypatch.undo()
    assert state == LabelStore(path).state()


def test_lines_appended_by_another_writer_are_taken_in(tmp_path):
    path = tmp_path / "labels.csv"
    mine, other = LabelStore(path), LabelStore(path)  # as two server processes
    mine.label("a.mp3", ["calm"], "ann")
    assert other.state() == {"a.mp3": ("calm",)}
    other.label("b.mp3", ["sad"], "bob")
    other.label("a.mp3", ["sad"], "ann")  # ann's newest label, written through the other store
    assert mine.undo("ann").path == "a.mp3"  # mine sees it before undoing: it revokes that one
    assert mine.state() == other.state() == {"a.mp3": ("calm",), "b.mp3": ("sad",)}
    mine.label("a.mp3", ["calm"], "ann")  # ann's newest surviving label again: nothing appended
    assert len(path.read_text().splitlines()) == 5
    other.label("a.mp3", ["dark"], "ann")
    assert mine.undo("ann").path == "a.mp3" and other.state()["a.mp3"] == ("calm",)


def test_a_replaced_shortened_or_rewritten_file_is_replayed_again(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("a.mp3", ["calm"], "ann")
    store.label("b.mp3", ["sad"], "ann")
    assert store.state() == {"a.mp3": ("calm",), "b.mp3": ("sad",)}
    header, first, second = path.read_text().splitlines()
    # replaced by another file (a restore from backup): another inode
    replacement = tmp_path / "restored.csv"
    replacement.write_text(f"{header}\n{second}\n")
    os.replace(replacement, path)
    assert store.state() == {"b.mp3": ("sad",)}
    # cut short in place
    with open(path, "r+") as handle:
        handle.truncate(len(header) + 1)
    assert store.state() == {}
    # rewritten in place, as long as before and longer: the bytes before the point read differ
    with open(path, "w") as handle:
        handle.write(f"{header}\n{first.replace('calm', 'dark')}\n")
    store.label("c.mp3", ["calm"], "ann")
    assert store.state() == LabelStore(path).state() == {"a.mp3": ("dark",), "c.mp3": ("calm",)}


def test_annotators_taking_turns_on_a_track_each_get_their_label_written(tmp_path):
    """alice calm, bob sad, alice calm again: the third label was taken for a key pressed twice (alice's newest
    label was the same) and dropped, although bob's label stood; the page said "saved"."""
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("030.ogg", ["calm"], "alice")
    store.label("030.ogg", ["sad"], "bob")
    store.label("030.ogg", ["calm"], "alice")
    assert store.state() == {"030.ogg": ("calm",)}
    assert len(path.read_text().splitlines()) == 4
    store.label("030.ogg", ["calm"], "alice")  # now a repeat: nothing appended
    assert len(path.read_text().splitlines()) == 4


def test_a_labels_file_saved_again_with_a_byte_order_mark_is_read(tmp_path):
    """A spreadsheet's "CSV UTF-8" puts a BOM before the header: the project was refused as "not a labels file"."""
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("a.mp3", ["calm"], "ann")
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")
    again = LabelStore(path)
    assert again.state() == {"a.mp3": ("calm",)}
    again.label("b.mp3", ["sad"], "ann")
    assert LabelStore(path).state() == {"a.mp3": ("calm",), "b.mp3": ("sad",)}


def test_a_labels_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("a.mp3", ["calm"], "ann")
    with open(path, "ab") as handle:
        handle.write("b.mp3,d\xe9j\xe0,2026-12-07T00:00:00+0000,ann,label\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"labels.csv:3: not UTF-8 text \(byte 0xe9.*save it again as UTF-8"):
        store.state()


def test_a_torn_line_inside_a_quoted_path_swallows_nothing_live_or_after_a_restart(tmp_path):
    """A writer killed inside a quoted path (commas are common in file names) left an open quote: a restart's
    replay read every later line into that field, while the running store still showed them."""
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.label("a.mp3", ["calm"], "ann")
    with open(path, "a") as handle:
        handle.write('"Artist, The - So')
    store.label("c.mp3", ["sad"], "ann")
    store.label("d.mp3", ["calm"], "ann")
    assert store.state() == LabelStore(path).state() == {"a.mp3": ("calm",), "c.mp3": ("sad",), "d.mp3": ("calm",)}


def test_an_edit_that_keeps_the_length_or_touches_the_last_lines_read_is_replayed(tmp_path):
    """Only growth is read incrementally: an edit in place of the same length (an editor writing in place) and an
    edit of the last lines read made together with an append both replay the file."""
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    for i in range(20):
        store.label(f"{i}.mp3", ["calm"], "ann")
    assert store.state()["0.mp3"] == ("calm",)
    seen = path.stat().st_mtime_ns
    path.write_text(path.read_text().replace("0.mp3,calm", "0.mp3,dark", 1))  # same length, in place
    os.utime(path, ns=(seen + 10**9, seen + 10**9))  # a later edit (file times can be coarser than this test)
    assert store.state()["0.mp3"] == ("dark",) == LabelStore(path).state()["0.mp3"]
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]  # 19.mp3's line, within the last bytes read
    path.write_text(text.replace(last, last.replace("19.mp3,calm", "19.mp3,dark")) + "new.mp3,sad,t,ann,label\n")
    assert store.state()["19.mp3"] == ("dark",) and store.state()["new.mp3"] == ("sad",)
    assert store.state() == LabelStore(path).state()
