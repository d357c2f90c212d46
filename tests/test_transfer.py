"""Transfer learning: weights from runs, checkpoints, packages and foreign files (musetag.training.transfer)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from musetag.errors import ConfigError, ModelError
from musetag.models import create_model
from musetag.models.weights import list_key_mappings
from musetag.training.transfer import (
    StageFreezer,
    init_from,
    load_source,
    model_from_source,
    model_stages,
    transfer_weights,
)


def _source(n_classes=4, seed=1):
    torch.manual_seed(seed)
    model = create_model("simplecnn", n_classes=n_classes)
    with torch.no_grad():  # make every tensor distinguishable from a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, b in model.named_buffers():
            if "running" in name:
                b.add_(torch.rand_like(b))
    return model


def _body_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("classifier."))


@pytest.mark.parametrize("form", ["state_dict.pt", "wrapped.pt", "weights.safetensors", "checkpoint.pt", "package"])
def test_every_source_form_loads_the_body_and_recreates_the_classifier(tmp_path, form):
    from safetensors.torch import save_file

    from musetag.inference.package import save_package

    src = _source()
    sd = src.state_dict()
    path = tmp_path / form
    if form == "state_dict.pt":
        torch.save(sd, path)
    elif form == "wrapped.pt":  # DDP / AveragedModel wrapper inside a foreign training state
        torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif form == "weights.safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif form == "checkpoint.pt":
        torch.save({"model": src.musetag_config, "state_dict": sd, "tags": list("abcd"), "task": "multilabel"}, path)
    else:
        save_package(path, model_name="simplecnn", model_args=src.musetag_config["args"], state_dict=sd,
                     features={"kind": "mel", "sample_rate": 16000}, tags=list("abcd"), task="multilabel",
                     segment={"frames": 64})
    target = create_model("simplecnn", n_classes=6)
    fresh_head = target.classifier.weight.detach().clone()
    report = transfer_weights(target, path, tags=list("uvwxyz"))
    assert _body_equal(src, target)
    assert torch.equal(target.classifier.weight, fresh_head)
    assert set(report.skipped_classifier) == {"classifier.weight", "classifier.bias"}
    assert report.not_initialised == ["classifier.weight", "classifier.bias"]
    assert 0.9 < report.fraction_loaded < 1.0
    assert "classifier re-created" in report.summary()


def test_shared_tags_keep_their_classifier_rows(tmp_path):
    src = _source(n_classes=4)
    torch.save({"model": src.musetag_config, "state_dict": src.state_dict(), "tags": ["a", "b", "c", "d"]},
               tmp_path / "c.pt")
    target = create_model("simplecnn", n_classes=3)
    fresh = target.classifier.weight.detach().clone()
    report = transfer_weights(target, tmp_path / "c.pt", tags=["c", "new", "a"])
    w, sw = target.classifier.weight, src.classifier.weight
    assert torch.equal(w[0], sw[2]) and torch.equal(w[2], sw[0]) and torch.equal(w[1], fresh[1])
    assert torch.equal(target.classifier.bias[0], src.classifier.bias[2])
    assert report.classifier_rows["classifier.weight"] == ["c", "a"]
    # the same tags in the same order: the classifier is kept whole
    same = create_model("simplecnn", n_classes=4)
    transfer_weights(same, tmp_path / "c.pt", tags=["a", "b", "c", "d"])
    assert torch.equal(same.classifier.weight, sw)


def test_imagenet_style_weights_go_through_the_timm_mapping(tmp_path):
    from musetag._compat import import_timm

    timm = import_timm()
    torch.manual_seed(0)
    imagenet = timm.create_model("mobilenetv3_small_050", num_classes=1000, in_chans=3)  # RGB stem, 1000 classes
    torch.save(imagenet.state_dict(), tmp_path / "mobilenetv3_small_050.pth")
    target = create_model("timm:mobilenetv3_small_050", n_classes=5, in_channels=1)
    with pytest.raises(ModelError, match="--init-map"):  # bare timm names do not match musetag's by themselves
        transfer_weights(target, tmp_path / "mobilenetv3_small_050.pth")
    report = transfer_weights(target, tmp_path / "mobilenetv3_small_050.pth", key_map="timm")
    stem = imagenet.conv_stem.weight
    assert report.adapted == ["body.conv_stem.weight"]
    torch.testing.assert_close(target.body.conv_stem.weight, stem.sum(dim=1, keepdim=True))
    assert torch.equal(target.body.blocks[2][0].conv_pw.weight, imagenet.blocks[2][0].conv_pw.weight)
    assert "body.classifier.weight" in report.unused  # the ImageNet head has no place here
    assert report.fraction_loaded > 0.9


def test_prefix_and_user_mappings(tmp_path):
    src = _source()
    foreign = {f"encoder.{k}": v for k, v in src.state_dict().items()}
    torch.save({"state_dict": foreign}, tmp_path / "other_toolkit.ckpt")
    target = create_model("simplecnn", n_classes=4)
    transfer_weights(target, tmp_path / "other_toolkit.ckpt", key_map="prefix:encoder.=")
    assert _body_equal(src, target)
    (tmp_path / "mymap.py").write_text(
        "def rename(state_dict, model):\n"
        "    return {k.replace('encoder.', '', 1): v for k, v in state_dict.items()}\n"
    )
    target2 = create_model("simplecnn", n_classes=4)
    transfer_weights(target2, tmp_path / "other_toolkit.ckpt", key_map=f"{tmp_path / 'mymap.py'}:rename")
    assert _body_equal(src, target2)
    target3 = create_model("simplecnn", n_classes=4)
    transfer_weights(target3, foreign, key_map=lambda sd, model: {k[8:]: v for k, v in sd.items()})
    assert _body_equal(src, target3)
    assert {"none", "strip-wrappers", "lightning", "timm"} <= set(list_key_mappings())
    with pytest.raises(ConfigError, match="unknown key mapping"):
        transfer_weights(target3, foreign, key_map="no-such-map")


def test_bad_sources_say_what_to_do(tmp_path):
    target = create_model("simplecnn", n_classes=4)
    with pytest.raises(ModelError, match="no such file or folder.*pretrained model's name"):
        transfer_weights(target, tmp_path / "missing.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="unknown weights format"):
        transfer_weights(target, tmp_path / "notes.txt")
    (tmp_path / "broken.pt").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="broken.pt"):
        transfer_weights(target, tmp_path / "broken.pt")
    torch.save(create_model("resnet18", n_classes=4).state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(ModelError, match="no weight matches"):
        transfer_weights(target, tmp_path / "resnet.pt")
    # another architecture that shares one small tensor by name and shape (a classifier bias): it loaded 8 of
    # 220,952 parameters with a warning, and --freeze-stages then froze random weights
    other = create_model("resnet18", n_classes=4).state_dict()
    other["classifier.bias"] = torch.zeros_like(target.state_dict()["classifier.bias"])
    torch.save(other, tmp_path / "resnet_bias.pt")
    assert "classifier.bias" in target.state_dict()
    with pytest.raises(ModelError, match=r"only 4 of the model's [\d,]+ parameters match .*classifier.bias.*another "
                                         r"architecture"):
        transfer_weights(target, tmp_path / "resnet_bias.pt", keep_classifier=True)


def test_model_from_source_rebuilds_the_architecture_for_new_tags(tmp_path):
    src = _source()
    torch.save({"model": src.musetag_config, "state_dict": src.state_dict()}, tmp_path / "c.pt")
    model = model_from_source(tmp_path / "c.pt", n_classes=9)
    assert model.musetag_config["name"] == "simplecnn" and model.classifier.out_features == 9
    assert load_source(tmp_path / "c.pt").kind == "checkpoint"


def test_freezing_the_first_stages_for_some_epochs():
    src = _source()
    model = create_model("simplecnn", n_classes=3)
    report, freezer = init_from(model, src.state_dict(), freeze_stages=2, freeze_epochs=1)
    names = [n for n, _ in model_stages(model)]
    assert report.frozen_stages == names[:2] == freezer.stage_names
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(4, *model.default_input.shape[:2], 96)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def step(epoch):
        model.train()
        assert freezer.apply(epoch) == (epoch < 1)
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    step(0)
    after = model.state_dict()
    frozen = [k for k in after if k.startswith(("features.0.", "features.1."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)  # weights and BN statistics
    assert not torch.equal(after["features.2.0.weight"], before["features.2.0.weight"])
    assert freezer.trainable_parameters() < sum(p.numel() for p in model.parameters())
    step(1)  # unfrozen from the second epoch
    assert not torch.equal(model.state_dict()["features.0.0.weight"], before["features.0.0.weight"])
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="at most 4"):
        StageFreezer(model, 5)


@pytest.mark.slow
def test_train_init_from_a_run_with_another_tag_set(tmp_path):
    """The issue's flow from the command line: train on corpus A (4 genres), fine-tune on corpus B
    (8 other tags) with --init-from the A run and two frozen stages for the first epoch."""
    import json

    from musetag.cli import main
    from musetag.data.synth import GENRES, MULTILABEL_TAGS, make_corpus

    a = make_corpus(tmp_path / "a", n_clips=12, seconds=3, seed=1, task="multiclass", clips_per_artist=1)
    b = make_corpus(tmp_path / "b", n_clips=12, seconds=3, seed=2, task="multilabel", clips_per_artist=1)
    small = ["--set", "epochs=1", "--set", "data.crop=64", "--set", "data.eval_crop=64", "--no-progress"]
    assert main(["train", "demo", "--data", str(a.parent / "dataset.toml"), "--out", str(tmp_path / "ra"), *small]) == 0
    assert main(["train", "demo", "--data", str(b.parent / "dataset.toml"), "--out", str(tmp_path / "rb"),
                 "--init-from", str(tmp_path / "ra"), "--freeze-stages", "2", "--freeze-epochs", "1", *small]) == 0
    report = json.loads((tmp_path / "rb" / "transfer.json").read_text())
    assert report["skipped_classifier"] == ["classifier.weight", "classifier.bias"]
    assert report["frozen_stages"] == ["features.0", "features.1"] and report["fraction_loaded"] > 0.9
    from musetag.models.weights import find_checkpoint

    # a run folder gives its final checkpoint (the demo recipe's is SWA): the one transfer.json names
    loaded = find_checkpoint(tmp_path / "ra", "auto")
    assert loaded.name in report["source"]
    source = torch.load(loaded, weights_only=True)
    tuned = torch.load(tmp_path / "rb" / "checkpoints" / "last.pt", weights_only=True)
    assert source["tags"] == list(GENRES) and tuned["tags"] == list(MULTILABEL_TAGS)
    src, new = source["state_dict"], tuned["state_dict"]
    frozen = [k for k in src if k.startswith(("features.0.", "features.1."))]
    assert frozen and all(torch.equal(src[k], new[k]) for k in frozen)  # weights and BN statistics kept
    assert not torch.equal(src["features.3.0.weight"], new["features.3.0.weight"])  # the rest trained
    assert "[init]" in (tmp_path / "rb" / "config.toml").read_text()


@pytest.mark.slow
def test_coteaching_peer_starts_from_other_weights(tmp_path, capsys):
    """SELAB's two networks both start pretrained: --init-peer-from loads the peer's weights the
    way --init-from loads the model's (here: a run on another corpus with another tag set)."""
    import json

    from musetag.cli import main
    from musetag.data.synth import make_corpus
    from musetag.models.weights import find_checkpoint

    a = make_corpus(tmp_path / "a", n_clips=12, seconds=3, seed=1, task="multiclass", clips_per_artist=1)
    b = make_corpus(tmp_path / "b", n_clips=12, seconds=3, seed=2, task="multilabel", clips_per_artist=1)
    small = ["--set", "epochs=1", "--set", "data.crop=64", "--set", "data.eval_crop=64", "--no-progress",
             "--set", "model.args.width=8"]
    assert main(["train", "demo", "--data", str(a.parent / "dataset.toml"), "--out", str(tmp_path / "ra"), *small]) == 0
    peer_sets = ["--set", "coteaching.enabled=true", "--set", "coteaching.peer=simplecnn",
                 "--set", "coteaching.peer_args={width = 8}", "--set", "max_steps_per_epoch=1",
                 "--set", "optim.lr=1e-6", "--set", "schedule.warmup_epochs=0"]
    assert main(["train", "demo", "--data", str(b.parent / "dataset.toml"), "--out", str(tmp_path / "rb"),
                 "--init-peer-from", str(tmp_path / "ra"), *small, *peer_sets]) == 0
    report = json.loads((tmp_path / "rb" / "transfer-peer.json").read_text())
    assert report["fraction_loaded"] > 0.9 and report["skipped_classifier"] == ["classifier.weight", "classifier.bias"]
    assert not (tmp_path / "rb" / "transfer.json").exists()  # the model itself started from scratch

    src = torch.load(find_checkpoint(tmp_path / "ra", "auto"), weights_only=True)["state_dict"]
    trained = torch.load(tmp_path / "rb" / "checkpoints" / "last.pt", weights_only=True)["training"]["models"]
    key = "features.0.0.weight"
    # one step at lr 1e-6 moves nothing visibly: the peer still holds the source's weights...
    assert torch.allclose(trained[1][key], src[key], atol=1e-4)
    # ... which a peer started from scratch does not
    assert main(["train", "demo", "--data", str(b.parent / "dataset.toml"), "--out", str(tmp_path / "rd"),
                 *small, *peer_sets]) == 0
    scratch = torch.load(tmp_path / "rd" / "checkpoints" / "last.pt", weights_only=True)["training"]["models"][1]
    assert not torch.allclose(scratch[key], src[key], atol=1e-2)

    # --freeze-stages applies to every network started from weights: here only the peer
    lively = peer_sets[:8]  # co-teaching with the recipe's learning rate
    assert main(["train", "demo", "--data", str(b.parent / "dataset.toml"), "--out", str(tmp_path / "re"),
                 "--init-peer-from", str(tmp_path / "ra"), "--freeze-stages", "2", *small, *lively]) == 0
    report = json.loads((tmp_path / "re" / "transfer-peer.json").read_text())
    assert report["frozen_stages"] == ["features.0", "features.1"]
    peer = torch.load(tmp_path / "re" / "checkpoints" / "last.pt", weights_only=True)["training"]["models"][1]
    frozen = [k for k in src if k.startswith(("features.0.", "features.1."))]
    assert frozen and all(torch.equal(peer[k], src[k]) for k in frozen)  # weights and BN statistics kept
    assert not torch.equal(peer["features.3.0.weight"], src["features.3.0.weight"])  # the rest trained

    # without co-teaching there is no peer: refused before any work, saying what is missing
    assert main(["train", "demo", "--data", str(b.parent / "dataset.toml"), "--out", str(tmp_path / "rc"),
                 "--init-peer-from", str(tmp_path / "ra"), *small]) == 2
    assert "needs coteaching.enabled = true" in capsys.readouterr().err
    assert not (tmp_path / "rc" / "checkpoints").exists()


def test_subnormal_source_weights_arrive_as_zeros():
    """Fine-tuning a published backbone must not inherit its subnormal floats (they run ~50x slower on
    x86): transfer_weights zeroes them, and the normal weights arrive unchanged."""
    src = _source()
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for p in src.parameters():
            p.view(-1)[::5] = tiny / 3
    target = create_model("simplecnn", n_classes=4)
    transfer_weights(target, src, tags=list("abcd"))
    for (name, a), b in zip(src.named_parameters(), target.parameters()):
        if name.startswith("classifier."):  # a module source has no tag list: its head is not carried
            continue
        sub = (a != 0) & (a.abs() < tiny)
        assert sub.any() and torch.equal(b[sub], torch.zeros_like(b[sub])), name
        assert torch.equal(a[~sub], b[~sub]), name
