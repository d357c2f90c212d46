"""The centred excerpt decoded no further than its end (musetag.audio.excerpt), for the default model's
``centre_excerpt`` rule on jamendo96: equal sample for sample to the excerpt cut from the whole decoded
and resampled file (the golden path), on the 10 real songs; the tagger's window from it equals the
whole-file window; it decodes well under the whole file; truncated or joined files keep their errors
and fallbacks. Why not a seek: FFmpeg's fixed-point MP3 decoder carries its rounding remainder through
the whole stream (a decode from a seek point is one LSB off on about half the samples for good)."""
from __future__ import annotations

import numpy as np
import pytest

from musetag.audio import load_audio
from musetag.audio.excerpt import linear_output_count, load_centre_excerpt
from musetag.audio.ops import resample
from musetag.errors import AudioError
from musetag.features import JAMENDO_EXCERPT_SAMPLES, compute_features, get_preset
from conftest import shared_path

pytest.importorskip("av")
pytest.importorskip("samplerate")
L = JAMENDO_EXCERPT_SAMPLES


def _songs():
    return sorted(shared_path("jamendo-songs", "mp3").glob("*.mp3"))


def _excerpt(path):
    return load_centre_excerpt(path, L, sample_rate=12000, mono=True, resample_method="linear", decoder="essentia")


@pytest.mark.parametrize("n_in", [1, 2, 3, 100, 44100, 123457, 6517760])
def test_output_count_equals_the_whole_resampled_length(n_in):
    rng = np.random.default_rng(n_in)
    x = rng.standard_normal(n_in).astype(np.float32)
    assert linear_output_count(n_in, 44100, 12000) == resample(x, 44100, 12000, method="linear").shape[-1]
    assert linear_output_count(n_in, 12000, 12000) == n_in


@pytest.mark.shared
def test_excerpt_equals_the_whole_file_slice_and_the_golden_on_all_songs():
    cfg = get_preset("jamendo96")
    for path in _songs():
        whole, _ = load_audio(path, sample_rate=12000, resample_method="linear", decoder="essentia")
        got = _excerpt(path)
        assert got is not None, path.name
        excerpt, n = got
        start = (whole.size - L) // 2
        assert n == whole.size and excerpt.shape == (1, L)
        np.testing.assert_array_equal(excerpt[0], whole[start : start + L])
        golden = np.load(shared_path("golden", "essentia-jamendo96", "excerpt", f"{path.stem}.npy"))
        feats = compute_features(excerpt[0], 12000, cfg)
        golden = golden if golden.shape == feats.shape else golden.T
        assert np.abs(feats - golden)[golden > -150].max() <= 0.05, path.name


@pytest.mark.shared
def test_tagger_window_equals_the_whole_file_window_and_decodes_less(tmp_path, monkeypatch):
    from musetag.audio import ffmpeg_decode
    from musetag.models import create_model
    from musetag.inference.package import save_package
    from musetag.inference.tagger import Tagger

    cfg = get_preset("jamendo96")
    model = create_model("vggish_baseline", n_classes=2, act="elu").eval()
    pkg = save_package(
        tmp_path / "base", model_name="vggish_baseline", model_args=model.musetag_config["args"],
        state_dict=model.state_dict(), features=cfg.to_dict(), tags=["x", "y"], task="multilabel",
        segment={"rule": "centre_excerpt", "samples": L, "aggregation": "mean"},
    )
    front = Tagger.from_package(pkg).front
    song = _songs()[0]
    decoded = []
    blocks = ffmpeg_decode._Reader.blocks

    def counting(self, *args, **kwargs):
        for block in blocks(self, *args, **kwargs):
            decoded.append(block.shape[0])
            yield block

    monkeypatch.setattr(ffmpeg_decode._Reader, "blocks", counting)
    segs, duration = front.segments(song)
    part = sum(decoded)
    starts = list(front.last_starts)
    decoded.clear()
    monkeypatch.setattr(front, "decode_windows", lambda source: None)  # the whole-file path
    whole_segs, whole_duration = front.segments(song)
    assert sum(decoded) > 0 and part < 0.75 * sum(decoded)  # measured 0.61 of the file on this song
    np.testing.assert_array_equal(segs, whole_segs)
    assert duration == whole_duration and starts == list(front.last_starts)
    monkeypatch.undo()
    streamed = np.concatenate(list(front.stream_segments(song)))
    np.testing.assert_array_equal(streamed, whole_segs)
    assert front.last_starts == starts


@pytest.mark.shared
def test_truncated_and_joined_files(tmp_path):
    song = _songs()[0]
    data = song.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # past the excerpt's end, short of the header's length
    assert _excerpt(cut) is None  # the whole-file path decodes it and reports the truncation
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut, decoder="essentia")
    early = tmp_path / "early.mp3"
    early.write_bytes(data[: int(len(data) * 0.3)])  # before the excerpt: the whole-file path decides
    assert _excerpt(early) is None
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(data + _songs()[1].read_bytes())  # the first header announces only the first part
    assert _excerpt(joined) is None
    assert load_centre_excerpt(song, L, sample_rate=12000, mono=True, resample_method="linear", decoder="auto") is None


@pytest.mark.shared
def test_evenly_spaced_chunks_by_seeks_equal_the_whole_file_chunks(monkeypatch):
    """musicnn's rule (16 windows of 3 s at 16 kHz, libmpg123 + soxr HQ): each chunk decoded by a seek
    equals the whole-file path's chunk to 2e-5 (measured 1.7e-6: libmpg123's in-decoder mix and soxr
    on a piece round differently), at the same starts; fcn's 16 x 29 s cover most of a song: whole."""
    from musetag.audio.windows import soxr_output_count
    from musetag.inference.frontend import FrontEnd

    cfg = get_preset("waveform16k").to_dict()
    for song in _songs()[:3]:
        front = FrontEnd(cfg, {"rule": "evenly_spaced", "samples": 48000, "count": 16})
        part = front.decode_windows(song)
        assert part is not None
        segs, duration = front.segments(song)
        starts = list(front.last_starts)
        with monkeypatch.context() as m:
            m.setattr(front, "decode_windows", lambda source: None)
            whole, whole_duration = front.segments(song)
        assert segs.shape == whole.shape == (16, 1, 48000) and starts == list(front.last_starts)
        assert duration == whole_duration
        assert np.abs(segs - whole).max() <= 2e-5, song.name
        streamed = np.concatenate(list(front.stream_segments(song)))
        np.testing.assert_array_equal(streamed, segs)
        long_windows = FrontEnd(cfg, {"rule": "evenly_spaced", "samples": 16000 * 29, "count": 16})
        assert long_windows.decode_windows(song) is None
    for n in (1, 2, 3, 5, 44101, 1234569):
        x = np.zeros(n, np.float32)
        assert soxr_output_count(n, 44100, 16000) == resample(x, 44100, 16000).shape[-1]
        assert soxr_output_count(n, 44100, 22050) == resample(x, 44100, 22050).shape[-1]


@pytest.mark.shared
def test_header_that_understates_the_file_goes_to_the_whole_file_path(tmp_path):
    """MP3 frames appended after a song whose Xing header announces only the song: FFmpeg decodes them
    all, so the excerpt's position must come from the whole file, not the header."""
    first, second = (p.read_bytes() for p in _songs()[:2])
    for tag in (b"Xing", b"Info"):
        second = second.replace(tag, b"XXXX")  # the second song's header frame no longer starts a stream
    longer = tmp_path / "longer.mp3"
    longer.write_bytes(first + second)
    assert _excerpt(longer) is None


@pytest.mark.shared
def test_why_no_seek_fixed_point_mp3_decoder_stays_one_lsb_off_after_a_seek():
    """The reason the excerpt is decoded from the song's start: FFmpeg's fixed-point decoder, after a
    seek, never rejoins the whole-file decode (its rounding remainder is carried through the stream)."""
    av = pytest.importorskip("av")
    path = _songs()[0]

    def frames(seek_seconds=None):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            codec = av.codec.CodecContext.create("mp3", "r")
            if seek_seconds is not None:
                container.seek(int(seek_seconds / stream.time_base), stream=stream)
            out = {}
            for i, packet in enumerate(container.demux(stream)):
                for frame in codec.decode(packet):
                    out[frame.pts] = frame.to_ndarray().astype(np.int32)
                if seek_seconds is not None and i > 400:
                    break
            return out

    whole, seeked = frames(), frames(60.0)
    later = sorted(seeked)[50:]  # 50 frames (1.3 s) of pre-roll and more
    diff = np.concatenate([(seeked[p] - whole[p]).ravel() for p in later])
    assert np.abs(diff).max() == 1 and (diff != 0).mean() > 0.1


@pytest.mark.shared
@pytest.mark.slow
def test_three_hour_mp3_streams_in_bounded_memory(tmp_path):
    """A 3.25-hour MP3 (the 10 songs joined 7 times) through the default model's front end on
    jamendo96 (FFmpeg's fixed-point decoder, streamed; the joined streams keep it off the excerpt
    path, so all of it is decoded): the process's peak RSS (>= its PSS; one process) stays under 1 GB.
    Decoded whole it would need > 2 GB for the 44.1 kHz samples alone."""
    import subprocess
    import sys
    import textwrap

    data = b"".join(p.read_bytes() for p in _songs())
    path = tmp_path / "three-hours.mp3"
    path.write_bytes(data * 7)
    script = textwrap.dedent(f"""
        import numpy as np, torch
        torch.set_num_threads(1)
        from musetag.features import get_preset
        from musetag.inference.frontend import FrontEnd
        front = FrontEnd(get_preset("jamendo96").to_dict(), {{"rule": "centre_excerpt", "samples": {L}}})
        path = {str(path)!r}
        assert front.is_long(path)
        windows = np.concatenate(list(front.stream_segments(path)))
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
        print(windows.shape, front.last_duration, int(hwm))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, check=True)
    shape, duration, hwm_kb = out.stdout.strip().rsplit(" ", 2)[0], *out.stdout.split()[-2:]
    assert "(1, 1, 96, 1366)" in out.stdout, out.stdout + out.stderr
    assert float(duration) > 3 * 3600
    assert int(hwm_kb) < 1024 * 1024, f"peak RSS {int(hwm_kb) / 1024:.0f} MB"
