"""Warnings that travel with a file's scores: what the scores alone do not say.

A network returns scores for any input, confident ones too, also for a file holding a single
sample or 30 s of digital silence. Such files are still tagged (status ``ok``: the run is not an
error), but their result carries a ``warnings`` list (the ``warnings`` column/field of every
output format, :attr:`musetag.tag.TagResult.warnings`, the HTTP response), so nobody reads those
scores as a judgement of music:

``too_short``
    the decoded audio (after the package's trimming) is shorter than one input window of the
    model (``segment.frames`` feature frames, or ``segment.samples``): the window was
    zero-padded, and the scores describe mostly padding.
``silent``
    no signal: the peak amplitude of the decoded audio is at or below :data:`SILENCE_DBFS`
    (-60 dBFS, 0.001 of full scale; digital silence and dither are far below it).
``decoder``
    the decoder reported damaged data it skipped or repaired (``decoder said: ...``, e.g.
    "Illegal Audio-MPEG-Header ... Skipped 300 bytes"): the scores may miss that stretch.

Each warning is one line that starts with its code (``too_short: ...``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["SILENCE_DBFS", "SILENCE_PEAK", "input_warnings", "peak"]

#: audio whose peak amplitude is at or below this level (dB relative to full scale) is "silent"
SILENCE_DBFS = -60.0
SILENCE_PEAK = float(10.0 ** (SILENCE_DBFS / 20.0))
_MAX_DECODER_LINES = 5


def peak(audio: np.ndarray) -> float:
    """Largest absolute sample (0 for empty audio). NaN or infinite samples (only a floating-point file can hold
    them: a damaged or wrongly exported WAV/FLAC) are an :class:`AudioError`: the network would turn them into
    confident scores about nothing."""
    if not audio.size:
        return 0.0
    value = float(np.max(np.abs(audio)))
    if not np.isfinite(value):
        from musetag.errors import AudioError

        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioError(f"the audio holds {bad} NaN or infinite sample(s) of {audio.size} (a damaged floating-point "
                         "file); re-export it from the original")
    return value


def input_warnings(front, n_samples: int, peak_value: float, notes: list[str] | None = None) -> list[str]:
    """The warnings for ``n_samples`` of audio at the model rate whose peak is ``peak_value``
    (``front``: the :class:`musetag.inference.tagger.FrontEnd` that decoded it)."""
    out: list[str] = []
    rate = float(front.sample_rate)
    seconds = n_samples / rate
    if front.length:
        if getattr(front, "audio_rule", False):  # the chunk is cut from the audio: length in samples
            have, need = int(n_samples), front.length
            need_s = need / rate
        elif front.kind == "mel":
            have, need = front.config.n_frames(int(n_samples)), front.length
            need_s = need * front.config.hop_length / rate
        else:
            have, need = int(n_samples), front.length
            need_s = need / rate
        if have < need:
            out.append(
                f"too_short: {seconds:.3f} s of audio, shorter than the model's {need_s:.2f} s input window "
                "(zero-padded); the scores describe mostly padding"
            )
    if peak_value <= SILENCE_PEAK:
        level = "digital silence" if peak_value == 0 else f"peak {20 * np.log10(peak_value):.0f} dBFS"
        out.append(f"silent: no signal ({level}, at or below {SILENCE_DBFS:g} dBFS); the scores are not about music")
    said = [n[len("decoder said: "):] if n.startswith("decoder said: ") else n for n in (notes or [])]
    if said:
        text = "; ".join(said[:_MAX_DECODER_LINES])
        if len(said) > _MAX_DECODER_LINES:
            text += f" (and {len(said) - _MAX_DECODER_LINES} more)"
        out.append(f"decoder: the decoder reported damaged or unexpected data: {text}")
    return out


# -- a package's description, checked before anything is allocated ------------------------------------
#: the longest input window a package may declare (a corrupt ``frames = 10**9`` would allocate GBs)
MAX_WINDOW_SECONDS = 3600.0


def check_description_bounds(desc: dict, where: str) -> None:
    """Refuse a model package description whose fields would break tagging or allocate without
    bound: tag count against the network's outputs, thresholds that are not probabilities,
    feature settings outside sane ranges (:meth:`musetag.features.FeatureConfig.from_dict`),
    windows longer than an hour. ``where`` names the package; raises :class:`ModelError`."""
    from musetag.errors import ConfigError, ModelError
    from musetag.features import FeatureConfig

    fix = "the package's musetag.json is damaged or hand-edited: fix it or re-create the package with `musetag package`"
    tags = desc["tags"]
    args = desc["model"].get("args") or {}
    if not isinstance(args, dict):
        raise ModelError(f"{where}: model.args must be an object, found {type(args).__name__}; {fix}")
    n_out = args.get("n_classes")
    if n_out is not None and (isinstance(n_out, bool) or not isinstance(n_out, int) or n_out != len(tags)):
        raise ModelError(
            f"{where}: {len(tags)} tags but the network has {n_out!r} outputs (model.args.n_classes); "
            f"the tag list must match the outputs one to one; {fix}"
        )
    thresholds = desc.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, list) or not all(
            t is None or isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in thresholds
        ):  # null: a tag never on (no validation positive to tune it on)
            shown = thresholds[:3] if isinstance(thresholds, list) else thresholds
            raise ModelError(f"{where}: thresholds must be numbers between 0 and 1, or null for a tag never "
                             f"on (found {shown!r}...); {fix}")
    if not isinstance(desc["features"], dict):
        raise ModelError(f"{where}: 'features' must be an object; {fix}")
    try:
        config = FeatureConfig.from_dict(dict(desc["features"]))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: features: {exc}; {fix}") from None
    seg = desc["segment"]
    for key in ("frames", "samples", "hop", "max_segments"):
        value = seg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ModelError(f"{where}: segment {key} must be a whole number >= 0, found {value!r}; {fix}")
    per_unit = config.hop_length if config.kind == "mel" and "frames" in seg else 1
    for key in ("frames", "samples", "hop"):
        value = seg.get(key) or 0
        if value * per_unit / config.sample_rate > MAX_WINDOW_SECONDS:
            raise ModelError(
                f"{where}: segment {key} = {value} is {value * per_unit / config.sample_rate:.0f} s of audio, more than "
                f"the {MAX_WINDOW_SECONDS:.0f} s a window may span; {fix}"
            )
