"""The pretrained-model catalogue, download and cache (musetag.inference.hub), over a real HTTP server on
127.0.0.1 and through an offline mirror folder. Conversion and parity with upstream: test_pretrained.py."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from musetag.cli import main
from musetag.errors import ModelError
from musetag.inference import catalogue, hub


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MUSETAG_MODEL_MIRROR", raising=False)
    monkeypatch.delenv("MUSETAG_ALLOW_UNSAFE_PICKLE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def server(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/www (the stand-in for the upstream host)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _weights_file(path: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv.weight": torch.arange(6.0).reshape(2, 3), **extra}, path)
    return path


def _entry_for(path: Path, url: str, name: str = "test-model") -> hub.Pretrained:
    data = path.read_bytes()
    base = hub.get_entry("jamendo-fcn")
    return dataclasses.replace(base, name=name, url=url, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                               mirror_path=f"test/{path.name}")


def test_catalogue_lists_every_model_with_licence_and_citation(capsys, cache):
    names = set(hub.catalogue())
    assert {"mtg-jamendo-baseline", "mtg-jamendo-baseline-whole", "jamendo-fcn", "jamendo-musicnn", "jamendo-crnn", "mtat-fcn", "mtat-musicnn",
            "msd-fcn", "msd-crnn"} <= names
    assert hub.DEFAULT_MODEL == "mtg-jamendo-baseline"
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    for name in names:
        assert name in out
    assert "MIT" in out and "Apache-2.0" in out and "Bogdanov" in out and "Won" in out
    baseline = hub.get_entry("mtg-jamendo-baseline")
    assert len(baseline.tags) == 56 and baseline.tags[0] == "action" and "melancholic" in baseline.tags
    assert hub.get_entry("jamendo-fcn").tags[-5:] == ["emotional", "energetic", "film", "happy", "relaxing"]
    assert all(len(e.tags) == len(set(e.tags)) for e in hub.catalogue().values())
    with pytest.raises(ModelError, match="did you mean jamendo-fcn"):
        hub.get_entry("jamendo-fnc")


def test_download_checks_and_caches(cache, server):
    root, base = server
    src = _weights_file(root / "w.pth")
    entry = _entry_for(src, f"{base}/w.pth")
    got = hub.fetch(entry, progress=False)
    assert got == hub.download_path(entry) and got.read_bytes() == src.read_bytes()
    assert got.is_relative_to(cache)
    src.unlink()  # a second fetch is served from the cache
    assert hub.fetch(entry, progress=False) == got


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_corrupt_download_is_refused_and_removed(cache, server, damage):
    root, base = server
    src = _weights_file(root / "w.pth")
    entry = _entry_for(src, f"{base}/w.pth")
    data = src.read_bytes()
    if damage == "tampered":
        src.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        src.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="removed") as err:
        hub.fetch(entry, progress=False)
    assert ("sha256" in str(err.value)) if damage == "tampered" else ("bytes" in str(err.value))
    folder = hub.download_path(entry).parent
    assert not any(folder.iterdir()), "a damaged download was left in the cache"


def test_a_damaged_cached_file_is_fetched_again(cache, server):
    root, base = server
    src = _weights_file(root / "w.pth")
    entry = _entry_for(src, f"{base}/w.pth")
    dest = hub.download_path(entry)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"garbage")
    assert hub.fetch(entry, progress=False).read_bytes() == src.read_bytes()


def test_offline_without_mirror_names_the_url_the_file_and_where(cache, tmp_path):
    src = _weights_file(tmp_path / "w.pth")
    entry = _entry_for(src, "http://127.0.0.1:9/nowhere/w.pth")  # port 9 (discard): connection refused
    with pytest.raises(ModelError) as err:
        hub.fetch(entry, progress=False)
    message = str(err.value)
    assert entry.url in message and str(hub.download_path(entry)) in message
    assert "MUSETAG_MODEL_MIRROR" in message and entry.mirror_path in message and entry.sha256 in message


def test_mirror_is_used_and_never_modified(cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    src = _weights_file(mirror / "test" / "w.pth")
    entry = _entry_for(src, "http://127.0.0.1:9/w.pth")
    monkeypatch.setenv("MUSETAG_MODEL_MIRROR", str(mirror))
    assert hub.fetch(entry, progress=False).read_bytes() == src.read_bytes()
    bad = dataclasses.replace(entry, sha256="0" * 64, name="other")
    with pytest.raises(ModelError, match="mirror file"):
        hub.fetch(bad, progress=False)
    assert src.is_file()  # the mirror keeps its file


def test_not_a_state_dict_or_a_malicious_pickle_is_refused_and_removed(cache, server):
    root, base = server
    from test_hostile_inputs import evil_files

    evil = evil_files(root / "evil")["zip"]
    marker = evil.parent / "PWNED"
    entry = _entry_for(evil, f"{base}/evil/evil.pth", name="evil")
    raw = hub.fetch(entry, progress=False)
    with pytest.raises(ModelError, match="allow-unsafe-pickle"):
        hub._read_upstream(raw, entry)
    assert not marker.exists() and not raw.exists()
    torch.save([torch.zeros(2)], root / "list.pth")
    entry = _entry_for(root / "list.pth", f"{base}/list.pth", name="list")
    raw = hub.fetch(entry, progress=False)
    with pytest.raises(ModelError, match="not a state dict"):
        hub._read_upstream(raw, entry)
    assert not raw.exists()


def test_pull_of_a_malicious_file_runs_nothing(cache, server, monkeypatch, capsys):
    root, base = server
    from test_hostile_inputs import evil_files

    evil = evil_files(root / "evil")["zip"]
    entry = _entry_for(evil, f"{base}/evil/evil.pth", name="jamendo-fcn")
    monkeypatch.setitem(catalogue._CATALOGUE, "jamendo-fcn", entry)
    assert main(["pull", "jamendo-fcn", "--no-progress"]) != 0
    assert not (evil.parent / "PWNED").exists()
    assert "allow-unsafe-pickle" in capsys.readouterr().err


def test_unknown_names_fail_before_anything_is_fetched(cache, capsys):
    assert main(["pull", "jamendo-fcn", "no-such-model"]) != 0
    assert "no-such-model" in capsys.readouterr().err
    assert not (cache / "downloads").exists()


def test_tag_without_a_model_uses_the_default(tmp_path):
    from musetag.commands import split_model_and_paths

    (tmp_path / "song.mp3").write_bytes(b"")
    assert split_model_and_paths([str(tmp_path / "song.mp3")], None) == ("mtg-jamendo-baseline", [str(tmp_path / "song.mp3")])
    assert split_model_and_paths(["jamendo-fcn", "a.mp3"], None) == ("jamendo-fcn", ["a.mp3"])
    assert split_model_and_paths(["a.mp3", "b.mp3"], "msd-fcn") == ("msd-fcn", ["a.mp3", "b.mp3"])
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "musetag.json").write_text("{}")
    assert split_model_and_paths([str(pkg), "x"], None) == (str(pkg), ["x"])
    with pytest.raises(Exception, match="give the audio"):
        split_model_and_paths([str(pkg)], None)


def test_tag_refuses_a_first_item_meant_as_a_model(tmp_path, capsys):
    """A mistyped model name, a package path that does not exist, a package folder without its description
    or a folder of packages: an error naming the item (and the close pretrained names), not the rest
    tagged with the default model."""
    from musetag.commands import split_model_and_paths
    from musetag.errors import ConfigError

    song = tmp_path / "song.flac"
    song.write_bytes(b"")
    with pytest.raises(ConfigError, match="jamendo-musicn: no such pretrained model.*did you mean jamendo-musicnn"):
        split_model_and_paths(["jamendo-musicn", str(song)], None)
    with pytest.raises(ConfigError, match="did you mean jamendo-musicnn"):  # alone too: it is no file either
        split_model_and_paths(["jamendo-musicn"], None)
    with pytest.raises(ConfigError, match="models/dmo: no such pretrained model, package or audio file"):
        split_model_and_paths(["models/dmo", str(song)], None)
    broken = tmp_path / "models" / "demo"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="model.safetensors but no musetag.json"):
        split_model_and_paths([str(broken), str(song)], None)
    (broken / "musetag.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"folder of model packages.*models/demo"):
        split_model_and_paths([str(tmp_path / "models"), str(song)], None)
    # still audio: missing audio files (their own error rows), a folder of audio, a name alone
    assert split_model_and_paths(["msd-fcn.wav", str(song)], None)[0] == "mtg-jamendo-baseline"
    assert split_model_and_paths([str(tmp_path), str(song)], None)[0] == "mtg-jamendo-baseline"
    assert split_model_and_paths(["nosuchsong"], None) == ("mtg-jamendo-baseline", ["nosuchsong"])
    # and from the command line: exit 2, nothing tagged
    capsys.readouterr()
    assert main(["tag", "jamendo-musicn", str(song)]) == 2
    err = capsys.readouterr().err
    assert "did you mean jamendo-musicnn" in err and "using the default" not in err


def _thresholds_text(tags, values) -> str:
    return "".join(f"{t}\t{v!r}\n" for t, v in zip(tags, values))


@pytest.mark.parametrize("damage", ["short", "order", "columns", "nan", "above_one", "not_utf8", "prefix"])
def test_published_thresholds_are_read_strictly(tmp_path, damage):
    from musetag.inference.published_thresholds import read_published_thresholds

    tags = list(hub.get_entry("mtg-jamendo-baseline").upstream_tags)
    values = [round(0.01 * (i + 1), 6) for i in range(len(tags))]
    good = tmp_path / "good.txt"
    good.write_text(_thresholds_text(tags, values), encoding="utf-8")
    assert read_published_thresholds(good, tags) == values
    lines = _thresholds_text(tags, values).splitlines(keepends=True)
    if damage == "short":
        lines.pop()
    elif damage == "order":
        lines[0], lines[1] = lines[1], lines[0]
    elif damage == "columns":
        lines[3] = lines[3].rstrip("\n") + "\t0.5\n"
    elif damage == "nan":
        lines[3] = f"{tags[3]}\tnan\n"
    elif damage == "above_one":
        lines[3] = f"{tags[3]}\t1.5\n"
    elif damage == "prefix":
        lines[3] = lines[3].replace("mood/theme---", "")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe" + "".join(lines).encode() if damage == "not_utf8" else "".join(lines).encode())
    with pytest.raises(ModelError) as err:
        read_published_thresholds(bad, tags, fix="run `musetag pull X --force`")
    message = str(err.value)
    assert str(bad) in message and "musetag pull X --force" in message
    if damage in ("order", "columns", "nan", "above_one", "prefix"):
        assert f"{bad}:{1 if damage == 'order' else 4}:" in message


def test_published_thresholds_are_fetched_and_verified_like_the_weights(cache, server):
    root, base = server
    entry = hub.get_entry("mtg-jamendo-baseline")
    text = _thresholds_text(entry.upstream_tags, [0.1] * len(entry.upstream_tags)).encode()
    (root / "t.txt").write_bytes(text)
    pinned = dataclasses.replace(entry.thresholds, url=f"{base}/t.txt", sha256=hashlib.sha256(text).hexdigest(),
                                 size=len(text))
    got = hub.fetch(pinned, progress=False)
    assert got.read_bytes() == text and got.suffix == ".txt" and got.parent == cache / "downloads"
    (root / "t.txt").write_bytes(text.replace(b"0.1\n", b"0.2\n", 1))
    got.unlink()
    with pytest.raises(ModelError, match="sha256") as err:
        hub.fetch(pinned, progress=False)
    assert "musetag pull mtg-jamendo-baseline --force" in str(err.value)
    assert not any((cache / "downloads").iterdir())


def test_a_relative_home_is_made_absolute(tmp_path, monkeypatch):
    """MUSETAG_HOME=relhome/x was stored and printed relative: wrong once the working folder changes."""
    from musetag.inference.hub import home

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSETAG_HOME", "relhome/x")
    assert home() == tmp_path / "relhome" / "x" and home().is_absolute()


def test_a_cached_package_with_edited_tags_is_converted_again(tmp_path, monkeypatch, caplog):
    """Reversing the `tags` of a cached musetag.json left `musetag pull` reporting success, and tagging then
    named every score after another tag; the tags are checked against the catalogue's."""
    import json

    from conftest import SHARED_MODELS

    if not SHARED_MODELS.is_dir():
        pytest.skip(f"pretrained weights mirror not available: {SHARED_MODELS}")
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    entry = hub.get_entry("mtg-jamendo-baseline")
    folder = hub.pull(entry.name, progress=False)
    meta = folder / "musetag.json"
    desc = json.loads(meta.read_text(encoding="utf-8"))
    assert desc["tags"] == entry.tags and hub._package_is_current(folder, entry)
    desc["tags"] = desc["tags"][::-1]
    meta.write_text(json.dumps(desc), encoding="utf-8")
    assert hub._package_state(folder, entry) == "damaged"
    with caplog.at_level("WARNING"):
        assert hub.pull(entry.name, progress=False) == folder
    assert "musetag.json from the catalogue's tags" in caplog.text
    assert json.loads(meta.read_text(encoding="utf-8"))["tags"] == entry.tags
