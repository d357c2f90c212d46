"""One threshold rule for a tag without validation positives: +inf (never on), the official procedure's
(evaluate.fit_thresholds), in training, probes, packages and the service; JSON stores it as null."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from musetag.evaluate.metrics import EvaluationWarning
from musetag.evaluate.thresholds import fit_thresholds, thresholds_from_json, thresholds_to_json
from musetag.inference.package import load_package
from musetag.inference.result import TagResult
from musetag.training.decisions import decision_thresholds
from test_package import TAGS, make_package


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_training_max_f1_uses_the_official_rule():
    val_y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)  # tag 2: no positive
    val_p = np.array([[0.9, 0.2, 0.99], [0.4, 0.7, 0.98], [0.6, 0.3, 0.97], [0.2, 0.1, 0.96]])
    with pytest.warns(EvaluationWarning, match="column 2"):
        th, info = decision_thresholds("max_f1", val_p, val_y, val_y)
    assert info["rule"] == "max_f1"
    # known answers: tag 0's positives score 0.9 and 0.6 (F1 = 1 from 0.6 on), tag 1's one positive 0.7: the
    # official candidates; training places them halfway to the next lower score (0.4, 0.3) so that
    # 'score > threshold' keeps the positive at the candidate
    assert th[:2] == [0.5, 0.5] and th[2] == math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        assert th == [float(t) for t in fit_thresholds(val_p, val_y, keep_f1=True)]
        assert list(fit_thresholds(val_p, val_y)[:2]) == [0.6, 0.7]
    assert not (val_p[:, 2] >= th[2]).any()  # never on, whatever the score
    # a run knows its tags: the warning names them (it said "column 2")
    with pytest.warns(EvaluationWarning, match=r"threshold for: sad \("):
        decision_thresholds("max_f1", val_p, val_y, val_y, tags=["calm", "dark", "sad"])


def test_json_encoding_round_trip():
    assert thresholds_to_json([0.25, math.inf, 1.0]) == [0.25, None, 1.0]
    assert thresholds_from_json([0.25, None, 1.0]) == [0.25, math.inf, 1.0]
    assert thresholds_to_json(None) is None and thresholds_from_json(None) is None
    assert _strict_json(json.dumps(thresholds_to_json([math.inf]))) == [None]


def test_a_never_on_tag_survives_the_package_round_trip(tmp_path):
    thresholds = [0.5, math.inf] + [0.3] * (len(TAGS) - 2)
    pkg = make_package(tmp_path / "pkg", thresholds=thresholds)
    desc = _strict_json((pkg / "musetag.json").read_text(encoding="utf-8"))  # valid JSON: no Infinity
    assert desc["thresholds"][:2] == [0.5, None]
    loaded = load_package(pkg)
    assert loaded.thresholds == thresholds
    result = TagResult(tags=list(TAGS), scores_array=np.ones(len(TAGS), dtype=np.float32),
                       thresholds=np.asarray(loaded.thresholds, dtype=np.float32))
    assert TAGS[1] not in result.decisions and TAGS[0] in result.decisions  # a score of 1.0 stays off


def test_a_package_threshold_outside_0_1_is_still_refused(tmp_path):
    from musetag.errors import ModelError

    pkg = make_package(tmp_path / "pkg", thresholds=[0.5] * len(TAGS))
    desc = json.loads((pkg / "musetag.json").read_text(encoding="utf-8"))
    desc["thresholds"][0] = 1.5
    (pkg / "musetag.json").write_text(json.dumps(desc), encoding="utf-8")
    with pytest.raises(ModelError, match="between 0 and 1, or null"):
        load_package(pkg, load_weights=False)


def test_the_service_lists_a_never_on_threshold_as_null(tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    import musetag.serve.decoders as serve_decoders
    from musetag.serve.app import create_app

    monkeypatch.setattr(serve_decoders, "_context", lambda: mp.get_context("fork"))  # as tests/test_serve.py
    torch.manual_seed(0)
    pkg = make_package(tmp_path / "pkg", thresholds=[math.inf] + [0.4] * (len(TAGS) - 1))
    with TestClient(create_app(pkg)) as client:
        r = client.get("/v1/tags")
    assert r.status_code == 200
    assert _strict_json(r.text)["thresholds"] == [None] + [pytest.approx(0.4)] * (len(TAGS) - 1)
