"""Training-time augmentation of feature batches (active only in training).

Every function draws its randomness from an explicit ``numpy.random.Generator`` so that a training
run can make each batch's augmentation a pure function of (seed, epoch, step), which is what lets
a killed run resume to identical results.

- :func:`mixup` (Zhang et al. 2018): convex combinations of pairs of examples and their targets.
- :func:`spec_augment` (Park et al. 2019): zeroed blocks of frequency bands and time frames.
- :func:`random_crop` and :func:`random_scale` (AMLAG 2019, after the Freesound 2019 winners):
  a random excerpt; the time axis stretched by a random factor then cut back to its length.
- :func:`add_noise` and :func:`random_gain` (SoundFusion): Gaussian noise (std 0.02) and a random
  gain in ``[-12, +12]`` dB on raw waveforms; :func:`random_gain_mel` is the same gain applied to
  (normalised) mel features, where it is an offset in dB, so a cached-feature run can train with
  it too.

:class:`BatchAugment` chains them from a config and does nothing in ``eval()`` mode.

Shapes: spectrogram batches are ``(batch, channels, n_mels, frames)``; waveform batches
``(batch, channels, samples)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator,
          *, n_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix each example with a random partner of the same batch.

    ``lam ~ Beta(alpha, alpha)`` (one value per batch); returns ``(x_mixed, y_mixed, lam)``.
    ``y`` is a multi-hot / probability matrix ``(batch, n)``, or class indices ``(batch,)`` (then
    ``n_classes`` is required and the result is a class distribution).
    """
    if alpha <= 0:
        raise ValueError("mixup alpha must be > 0")
    if y.dim() == 1:
        if n_classes is None:
            raise ValueError("mixup of class indices needs n_classes")
        y = F.one_hot(y.long(), n_classes).float()
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
    x_mixed = lam * x + (1.0 - lam) * x[perm]
    y_mixed = lam * y.float() + (1.0 - lam) * y.float()[perm]
    return x_mixed, y_mixed, lam


def spec_augment(x: torch.Tensor, rng: np.random.Generator, *, time_masks: int = 2, freq_masks: int = 2,
                 max_time_fraction: float = 0.1, max_freq_fraction: float = 0.1, prob: float = 1.0,
                 fill: float = 0.0) -> torch.Tensor:
    """Zero ``freq_masks`` bands of up to ``max_freq_fraction * n_mels`` bins and ``time_masks``
    blocks of up to ``max_time_fraction * frames`` frames, independently for each example (with
    probability ``prob``). ``x``: ``(batch, channels, n_mels, frames)``; returns a new tensor."""
    if x.dim() != 4:
        raise ValueError(f"spec_augment expects (batch, channels, n_mels, frames), got {tuple(x.shape)}")
    out = x.clone()
    batch, _, n_mels, frames = x.shape
    max_f = int(max_freq_fraction * n_mels)
    max_t = int(max_time_fraction * frames)
    for b in range(batch):
        if rng.random() >= prob:
            continue
        for _ in range(freq_masks):
            width = int(rng.integers(0, max_f + 1))
            if width:
                start = int(rng.integers(0, n_mels - width + 1))
                out[b, :, start:start + width, :] = fill
        for _ in range(time_masks):
            width = int(rng.integers(0, max_t + 1))
            if width:
                start = int(rng.integers(0, frames - width + 1))
                out[b, :, :, start:start + width] = fill
    return out


def random_crop(x, length: int, rng: np.random.Generator, axis: int = -1):
    """A random excerpt of ``length`` along ``axis`` (numpy array or tensor); shorter inputs are
    zero-padded at the end."""
    size = x.shape[axis]
    if size <= length:
        pad = length - size
        if isinstance(x, torch.Tensor):
            widths = [0, 0] * (x.dim() - (axis % x.dim()) - 1) + [0, pad]
            return F.pad(x, widths)
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        return np.pad(x, widths)
    start = int(rng.integers(0, size - length + 1))
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


def random_scale(x: torch.Tensor, rng: np.random.Generator, low: float = 0.8, high: float = 1.25) -> torch.Tensor:
    """Stretch each example along time by a factor drawn in ``[low, high]`` (linear interpolation)
    and take a random excerpt (or zero-pad) back to the original number of frames."""
    if low == high == 1.0:
        return x
    frames = x.shape[-1]
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        scale = float(rng.uniform(low, high))
        new_len = max(1, int(round(frames * scale)))
        item = x[b:b + 1]
        if x.dim() == 4:
            stretched = F.interpolate(item, size=(x.shape[2], new_len), mode="bilinear", align_corners=False)
        else:
            stretched = F.interpolate(item, size=new_len, mode="linear", align_corners=False)
        out[b] = random_crop(stretched[0], frames, rng)
    return out


def add_noise(x: torch.Tensor, rng: np.random.Generator, std: float = 0.02) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``std`` (waveforms)."""
    noise = torch.randn(x.shape, generator=_torch_generator(rng), dtype=torch.float32).to(x.device, x.dtype)
    return x + std * noise


def random_gain(x: torch.Tensor, rng: np.random.Generator, max_db: float = 12.0) -> torch.Tensor:
    """Multiply each example by a gain drawn uniformly in ``[-max_db, +max_db]`` dB (waveforms)."""
    gains_db = rng.uniform(-max_db, max_db, size=x.shape[0])
    gains = torch.as_tensor(10.0 ** (gains_db / 20.0), dtype=x.dtype, device=x.device)
    return x * gains.view(-1, *([1] * (x.dim() - 1)))


def mel_gain_scale(feature_config) -> tuple[str, float, torch.Tensor | float]:
    """How a waveform gain of ``g`` dB shows in a batch of features made by ``feature_config``.

    dB features: every bin moves by ``g * db_multiplier * power / 20`` dB, divided by the
    normalisation ``std`` (per band or scalar) when the batch is normalised: ``("add", k, std)``.
    Linear features: every bin is multiplied by ``10 ** (g * power / 20)``: ``("mul", power, 1)``.
    (Bins at the ``db_amin`` floor and ``top_db`` clipping move too: a small approximation.)"""
    power = float(getattr(feature_config, "power", 2.0) or 2.0)
    std = getattr(feature_config, "std", None)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)) if std is not None else 1.0
    if isinstance(std_t, torch.Tensor) and std_t.dim() == 1 and std_t.numel() > 1:
        std_t = std_t.view(-1, 1)  # (n_mels, 1): broadcasts over (batch, channels, n_mels, frames)
    if getattr(feature_config, "to_db", True):
        return "add", float(feature_config.db_multiplier) * power / 20.0, std_t
    return "mul", power, 1.0


def random_gain_mel(x: torch.Tensor, rng: np.random.Generator, max_db: float, scale) -> torch.Tensor:
    """A random gain in ``[-max_db, +max_db]`` dB per example on mel features (``scale`` from
    :func:`mel_gain_scale`)."""
    gains_db = torch.as_tensor(rng.uniform(-max_db, max_db, size=x.shape[0]), dtype=x.dtype, device=x.device)
    gains_db = gains_db.view(-1, *([1] * (x.dim() - 1)))
    how, k, std = scale
    if how == "add":
        std = std.to(x.device, x.dtype) if isinstance(std, torch.Tensor) else std
        return x + gains_db * k / std
    return x * 10.0 ** (gains_db * k / 20.0)


class InModelSpecAugment:
    """SpecAugment for a waveform model whose mel front end is inside the network (the trainer sets
    it as the model's ``spec_augment``): the model calls it on its normalised mel during training,
    with the generator :class:`BatchAugment` handed it for this batch (so runs and resumes draw the
    same masks). Masks fill with 0, the mean after the model's input batch norm."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.rng: np.random.Generator | None = None

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        if self.rng is None:
            return mel
        c = self.cfg
        return spec_augment(mel, self.rng, time_masks=c.time_masks, freq_masks=c.freq_masks,
                            max_time_fraction=c.max_time_fraction, max_freq_fraction=c.max_freq_fraction,
                            prob=c.specaugment_prob)


class BatchAugment(nn.Module):
    """Training-time augmentation of ``(x, y)`` batches from an ``augment`` config section.

    Order: gain (waveforms; mel features: an offset in dB) and noise (waveform inputs), random
    scale, SpecAugment (spectrograms; for waveforms, ``spec_hook`` masks the mel inside the model),
    then mixup (which also mixes the targets). In ``eval()``
    mode the batch is returned unchanged. ``feature_config`` (with its ``mean``/``std`` when the
    batches are normalised) tells the mel gain how large one dB is; without it a mel batch is
    taken as unnormalised 10*log10 power.
    """

    def __init__(self, cfg, *, kind: str = "mel", n_classes: int | None = None, task: str = "multilabel",
                 feature_config=None) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind = kind
        self.n_classes = n_classes
        self.task = task
        self.mel_gain = mel_gain_scale(feature_config) if feature_config is not None else ("add", 1.0, 1.0)
        self.spec_hook: InModelSpecAugment | None = None

    @property
    def active(self) -> bool:
        c = self.cfg
        return bool(c.mixup_alpha > 0 or c.specaugment or tuple(c.random_scale) != (1.0, 1.0)
                    or c.noise_std > 0 or c.gain_db > 0)

    def forward(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return x, y
        c = self.cfg
        if self.kind == "waveform":
            if c.gain_db > 0:
                x = random_gain(x, rng, c.gain_db)
            if c.noise_std > 0:
                x = add_noise(x, rng, c.noise_std)
        elif c.gain_db > 0:
            x = random_gain_mel(x, rng, c.gain_db, self.mel_gain)
        if tuple(c.random_scale) != (1.0, 1.0):
            x = random_scale(x, rng, float(c.random_scale[0]), float(c.random_scale[1]))
        if self.spec_hook is not None:
            self.spec_hook.rng = rng  # the model masks its own mel in the forward pass that follows
        if c.specaugment and self.kind != "waveform":
            x = spec_augment(x, rng, time_masks=c.time_masks, freq_masks=c.freq_masks,
                             max_time_fraction=c.max_time_fraction, max_freq_fraction=c.max_freq_fraction,
                             prob=c.specaugment_prob)
        if c.mixup_alpha > 0 and rng.random() < c.mixup_prob:
            x, y, _ = mixup(x, y, c.mixup_alpha, rng, n_classes=self.n_classes)
        return x, y
