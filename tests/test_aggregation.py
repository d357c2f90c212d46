"""The one window aggregation (evaluate/aggregation.py) and the scorer that composes it (inference/scoring.py).

Known answers are worked by hand: sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4; softmax of
(0, ln 3) = (1/4, 3/4).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from musetag.errors import AudioError, ModelError
from musetag.evaluate.aggregation import WindowAggregator, activation, aggregate_counts, aggregate_windows
from musetag.inference.scoring import MeanVector, WindowScorer, plain_scorer

L3 = math.log(3.0)


def test_activation_known_values():
    np.testing.assert_allclose(activation(np.array([0.0, L3, -L3]), "multilabel"), [0.5, 0.75, 0.25])
    np.testing.assert_allclose(activation(np.array([[0.0, L3]]), "multiclass"), [[0.25, 0.75]])


@pytest.mark.parametrize("how,expected", [
    ("mean", [0.5 * (0.5 + 0.75), 0.5 * (0.25 + 0.5)]),
    ("max", [0.75, 0.5]),
    ("mean_logits", [1 / (1 + math.exp(-L3 / 2)), 1 / (1 + math.exp(L3 / 2))]),
])
def test_the_rules_on_two_windows(how, expected):
    logits = np.array([[0.0, -L3], [L3, 0.0]])  # window 1: (1/2, 1/4), window 2: (3/4, 1/2)
    agg = WindowAggregator(how, "multilabel")
    agg.add(logits[:1])
    agg.add(logits[1:])  # batch by batch ...
    np.testing.assert_allclose(agg.result(), expected, rtol=1e-6)
    # ... as all at once, and as several tracks stacked (training's validation)
    np.testing.assert_allclose(aggregate_counts(logits, [2], how, "multilabel")[0], expected, rtol=1e-6)
    stacked = aggregate_counts(np.concatenate([logits, logits[:1]]), [2, 1], how, "multilabel")
    np.testing.assert_allclose(stacked[1], [0.5, 0.25], rtol=1e-6)
    assert stacked.dtype == np.float32


def test_aggregate_windows_gives_the_file_score_back_from_window_probabilities():
    logits = np.array([[0.0, -L3], [L3, 0.0], [-L3, L3]])
    for how in ("mean", "max", "mean_logits"):
        agg = WindowAggregator(how, "multilabel")
        agg.add(logits)
        np.testing.assert_allclose(aggregate_windows(activation(logits, "multilabel"), how), agg.result(), rtol=1e-6)


def test_bad_rule_and_no_windows_are_clear_errors():
    with pytest.raises(ModelError, match="unknown segment aggregation 'median'"):
        WindowAggregator("median", "multilabel")
    with pytest.raises(AudioError, match="no segments"):
        WindowAggregator("mean", "multilabel").result()
    with pytest.raises(ModelError, match="one count per track"):
        aggregate_counts(np.zeros((3, 2)), [1, 1], "mean", "multilabel")


class _Identity:
    """A runner whose outputs are its inputs' first column block (windows (n, 2) -> logits (n, 2)); it counts
    the batches it is given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        return np.asarray(batch, dtype=np.float32)


def test_score_groups_shares_batches_across_files_and_equals_one_file_at_a_time():
    a = np.array([[0.0, -L3], [L3, 0.0]], dtype=np.float32)  # mean (5/8, 3/8)
    b = np.array([[-L3, L3]], dtype=np.float32)                 # (1/4, 3/4)
    c = np.array([[0.0, 0.0], [0.0, 0.0], [L3, L3]], dtype=np.float32)  # (7/12, 7/12)
    runner = _Identity()
    scorer = plain_scorer(runner, "mean", "multilabel")
    grouped = scorer.score_groups([a, b, c], batch_size=4)
    assert runner.batches == [4, 2]  # six windows of three files in two batches
    expected = [[0.625, 0.375], [0.25, 0.75], [7 / 12, 7 / 12]]
    for got, want, windows in zip(grouped, expected, (a, b, c)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
        alone, probs = scorer.score(windows, batch_size=1, keep=True)
        np.testing.assert_allclose(alone, got, rtol=1e-6)
        np.testing.assert_allclose(probs, activation(windows, "multilabel"), rtol=1e-6)
    assert scorer.score_groups([], batch_size=4) == []


def test_score_groups_splits_paired_outputs_per_file():
    # a runner that gives (embeddings, logits) per window, as the embedder with scores does
    def both(batch):
        return batch * 2.0, batch

    class Pair:
        def __init__(self):
            self.vec, self.agg = MeanVector(), WindowAggregator("max", "multilabel")

        def add(self, out):
            self.vec.add(out[0])
            self.agg.add(out[1])

        def result(self):
            return np.concatenate([self.vec.result(), self.agg.result()])

    scorer = WindowScorer(both, Pair, None, tags=[])
    a = np.array([[0.0, L3], [2.0, -L3]], dtype=np.float32)
    b = np.array([[4.0, 0.0]], dtype=np.float32)
    ra, rb = scorer.score_groups([a, b], batch_size=2)  # the batch [a1, a2] | [b1]
    np.testing.assert_allclose(ra, [2.0, 0.0, 1 / (1 + math.exp(-2.0)), 0.75], rtol=1e-6)
    np.testing.assert_allclose(rb, [8.0, 0.0, 1 / (1 + math.exp(-4.0)), 0.5], rtol=1e-6)
