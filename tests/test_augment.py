"""Training-time augmentation: known effects, determinism, and no-ops in eval mode."""
import numpy as np
import pytest
import torch

from musetag.features.augment import (BatchAugment, add_noise, mixup, random_crop, random_gain, random_scale,
                                      spec_augment)
from musetag.training.config import AugmentSection


def rng(seed=0):
    return np.random.default_rng(seed)


def test_mixup_is_a_convex_combination_of_batch_pairs():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 2, 3).clone()
    y = torch.eye(4)
    xm, ym, lam = mixup(x, y, 0.2, rng(1))
    assert 0 <= lam <= 1
    # each mixed target has weight lam on the example itself and 1 - lam on its partner
    assert torch.allclose(ym.sum(dim=1), torch.ones(4))
    for i in range(4):
        partner = int(torch.argmax(ym[i] - lam * y[i])) if lam < 1 else i
        expected = lam * x[i] + (1 - lam) * x[partner]
        assert torch.allclose(xm[i], expected, atol=1e-6)


def test_mixup_class_indices_become_distributions_and_is_deterministic():
    x = torch.randn(5, 1, 4, 6)
    y = torch.tensor([0, 1, 2, 0, 1])
    a = mixup(x, y, 0.4, rng(3), n_classes=3)
    b = mixup(x, y, 0.4, rng(3), n_classes=3)
    assert a[1].shape == (5, 3)
    assert torch.equal(a[0], b[0]) and a[2] == b[2]


def test_spec_augment_masks_bounded_blocks():
    x = torch.ones(8, 1, 40, 100)
    out = spec_augment(x, rng(0), time_masks=2, freq_masks=2, max_time_fraction=0.1, max_freq_fraction=0.1)
    assert torch.equal(x, torch.ones_like(x))  # input untouched
    for b in range(8):
        zero_rows = (out[b, 0] == 0).all(dim=1).sum().item()
        zero_cols = (out[b, 0] == 0).all(dim=0).sum().item()
        assert zero_rows <= 2 * 4 and zero_cols <= 2 * 10
    assert (out == 0).any()


def test_random_crop_and_scale_keep_the_length():
    x = np.arange(50, dtype=np.float32)[None]
    c = random_crop(x, 20, rng(0))
    assert c.shape == (1, 20) and np.all(np.diff(c[0]) == 1)
    assert random_crop(x, 80, rng(0)).shape == (1, 80)
    spec = torch.randn(3, 1, 16, 64)
    assert random_scale(spec, rng(0), 0.8, 1.25).shape == spec.shape
    # a ramp stretched by 2 and cropped keeps a slope of about 1/2
    ramp = torch.arange(64, dtype=torch.float32).view(1, 1, 64)
    s = random_scale(ramp, rng(0), 2.0, 2.0)
    assert float(torch.diff(s[0, 0, 5:-5]).mean()) == pytest.approx(0.5, abs=0.02)


def test_waveform_noise_and_gain():
    x = torch.zeros(4, 1, 20000)
    noisy = add_noise(x, rng(0), std=0.02)
    assert float(noisy.std()) == pytest.approx(0.02, rel=0.05)
    ones = torch.ones(64, 1, 10)
    g = random_gain(ones, rng(0), max_db=12)
    db = 20 * torch.log10(g[:, 0, 0])
    assert float(db.min()) >= -12 - 1e-4 and float(db.max()) <= 12 + 1e-4
    assert float(db.max() - db.min()) > 12  # really spread over the range


@pytest.mark.parametrize("preset", ["jamendo96", "bour128"])
def test_mel_gain_equals_the_gain_applied_to_the_waveform(preset):
    """A gain on normalised mel features is what the same gain on the audio gives (away from the
    dB floor): the augmentation a cached-feature run gets from ``augment.gain_db``."""
    import dataclasses

    from musetag.features import FeatureExtractor, get_preset

    base = get_preset(preset)
    sr = base.sample_rate
    t = np.arange(sr * 2) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng(3).standard_normal(t.size)).astype(np.float32)
    stats = dataclasses.replace(base, mean=list(np.linspace(-40, -20, base.n_mels)),
                                std=list(np.linspace(8, 15, base.n_mels)))
    extract = FeatureExtractor(stats, normalize=True).eval()
    gains = rng(7).uniform(-12, 12, size=3)
    with torch.no_grad():
        loud = torch.cat([extract(torch.from_numpy(wave * np.float32(10 ** (g / 20)))[None]) for g in gains])
        plain = extract(torch.from_numpy(wave)[None]).expand(3, -1, -1, -1)
    aug = BatchAugment(AugmentSection(gain_db=12.0), kind="mel", feature_config=stats).train()
    shifted, _ = aug(plain, torch.eye(3), rng(7))
    assert torch.allclose(shifted, loud, atol=1e-3)
    assert float((shifted - plain).abs().max()) > 0.3  # it did move


def test_noise_on_mel_features_is_refused_before_training(tmp_path):
    from musetag.data.synth import make_corpus
    from musetag.errors import ConfigError
    from musetag.training import train

    corpus = make_corpus(tmp_path / "c", n_clips=8, seconds=1.5, seed=0, clips_per_artist=1)
    with pytest.raises(ConfigError, match="noise_std"):
        train("demo", data=corpus.parent / "dataset.toml", out=tmp_path / "run",
              sets=["augment.noise_std=0.02", "epochs=1", "progress=false"])
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_batch_augment_only_in_training():
    cfg = AugmentSection(mixup_alpha=0.2, specaugment=True)
    aug = BatchAugment(cfg, kind="mel")
    x, y = torch.randn(4, 1, 16, 32), torch.eye(4)
    aug.eval()
    xe, ye = aug(x, y, rng(0))
    assert xe is x and ye is y
    aug.train()
    xt, yt = aug(x, y, rng(0))
    assert not torch.equal(xt, x)
    assert aug.active and not BatchAugment(AugmentSection(), kind="mel").active
