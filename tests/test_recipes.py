"""Every shipped recipe parses, the Bour recipes match the author's published configurations, and
every recipe trains for one tiny epoch on a tiny synthetic corpus."""
import json
import tomllib

import numpy as np
import pytest

from musetag.training.recipes import list_recipes, load_config, read_recipe, recipes_dir

RECIPES = list_recipes()
MULTICLASS_PREFIXES = ("soundfusion-", "gtzan-")  # genre recipes: single-label data
BOUR_LOSSES = {"BCEWithLogitsLoss": "bce", "WeightedBCEWithLogitsLoss": "wbce", "BinaryFocalLossWithLogits": "focal"}


def test_recipes_cover_every_published_system():
    names = set(RECIPES)
    for required in ("demo", "koutini2019-cp_resnet", "koutini2019-fa_resnet", "koutini2019-shake_fa_resnet",
                     "koutini2019-ensemble", "selab2021-efficientnet_b0", "selab2021-rexnet_100", "selab2021-ensemble",
                     "amlag2019-mobilenetv2", "amlag2019-mobilenetv2_attention", "soundfusion-simplecnn",
                     "soundfusion-resnet2d", "soundfusion-resnet1d", "soundfusion-nnet1", "soundfusion-nnet2",
                     "soundfusion-vgg16", "soundfusion-fusion", "mediaeval-baseline-vggish"):
        assert required in names
    assert len([n for n in names if n.startswith("bour2021-") and n != "bour2021-average"]) == 24


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_parses_and_quotes_the_paper(name):
    cfg = load_config(name)
    assert cfg.recipe == name and cfg.description
    text = (recipes_dir() / f"{name}.toml").read_text()
    assert text.startswith("#"), "recipes start with a header comment naming the paper and its numbers"
    tomllib.loads(text)


def test_selab_and_amlag_follow_their_seeds():
    selab = load_config("selab2021-ensemble")
    assert (selab.coteaching.enabled, selab.coteaching.forget_rate, selab.coteaching.weights) == (True, 0.05, [0.65, 0.35])
    assert (selab.model.name, selab.coteaching.peer) == ("efficientnet_b0", "rexnet_100")
    assert (selab.optim.name, selab.optim.lr, selab.epochs, selab.schedule.name, selab.schedule.patience,
            selab.schedule.factor) == ("adam", 1e-3, 100, "plateau", 5, 0.1)
    assert selab.data.crop == 960 and selab.data.eval_max_segments == 16 and selab.augment.specaugment
    att = load_config("amlag2019-mobilenetv2_attention")
    assert (att.epochs, att.optim.name, att.optim.switch_to_sgd_epoch, att.data.crop) == (120, "adam", 60, 4096)
    mob = load_config("amlag2019-mobilenetv2")
    assert mob.optim.name == "amsgrad" and mob.early_stopping.per_class and mob.final == "per_class"
    assert mob.data.crop == 6590


@pytest.mark.parametrize("name", [n for n in RECIPES if n.startswith("bour2021-") and n != "bour2021-average"])
def test_bour_recipe_matches_the_published_parameters(name, shared_data):
    exp = name[len("bour2021-"):]
    params = json.loads(shared_data("bour2021-predictions", "parameters", f"{exp}.json").read_text())
    cfg = load_config(name)
    assert cfg.epochs == params["num_epochs"] and cfg.seed == params["manual_seed"]
    assert cfg.model.name == {"convs": "bour_convs", "filters": "bour_filters"}[params["model"]["name"]]
    assert cfg.model.args["n_mels"] == params["model"]["params"]["n_mels"]
    assert cfg.model.args["dropout"] == params["model"]["params"]["dropout"]
    assert cfg.data.crop == params["model"]["params"]["input_length"] == params["dataset"]["params"]["train"]["input_length"]
    assert cfg.data.eval_crop == cfg.data.crop and cfg.data.aggregation == "mean"  # "averaged_sigmoid"
    assert params["evaluation_activation"] == "averaged_sigmoid"
    assert cfg.loss.name == BOUR_LOSSES[params["loss"]["name"]]
    assert (cfg.loss.focal_alpha, cfg.loss.focal_gamma) == (0.25, 2.0)
    opt = params["optimizer"]["params"]
    assert params["optimizer"]["name"] == "SGD" and cfg.optim.name == "sgd"
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum, cfg.optim.nesterov) == (
        opt["lr"], opt["weight_decay"], opt["momentum"], opt["nesterov"])
    assert params["scheduler"]["name"] == "CosineAnnealingLR" and cfg.schedule.name == "cosine"
    assert (cfg.schedule.t_max, cfg.schedule.min_lr) == (params["scheduler"]["params"]["T_max"],
                                                          params["scheduler"]["params"]["eta_min"])
    assert cfg.swa.enabled and cfg.swa.length == params["swa"]["length"] and params["swa"]["scheduler"] is None
    assert cfg.swa.lr == 0.0 and cfg.final == "swa"
    assert cfg.augment.mixup_alpha == params["mixup"]
    assert cfg.optim.grad_clip == params["gradient_clipping"]
    assert cfg.data.batch_size == params["dataloaders"]["train"]["batch_size"]
    assert cfg.data.drop_last == params["dataloaders"]["train"]["drop_last"]
    assert cfg.data.normalize and "stats" in params
    text = (recipes_dir() / f"{name}.toml").read_text()
    assert repr(params["stats"]["mean"]) in text  # the original normalisation is quoted
    preset = cfg.features["preset"]
    assert preset == {96: "jamendo96", 128: "bour128"}[params["model"]["params"]["n_mels"]]
    if preset == "bour128":
        from musetag.features import get_preset

        pre = json.loads(shared_data("bour2021-predictions", "parameters", "_preprocessing-melspecs128.json").read_text())
        fc = get_preset("bour128")
        p = pre["preprocessor"]["params"]
        assert (fc.sample_rate, fc.n_fft, fc.n_mels, fc.f_min, fc.f_max) == (
            p["sample_rate"], p["n_fft"], p["n_mels"], p["f_min"], p["f_max"])
        assert fc.mono == pre["mono"] and fc.trim_silence == pre["trim"]


def test_bour_published_numbers_in_headers_come_from_the_published_outputs(shared_data):
    """The header numbers of one recipe, recomputed from the author's published predictions."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    pred = np.load(shared_data("bour2021-predictions", "test", "filters-m96-i224-wbce.npy"))
    truth = np.load(shared_data("mtg-jamendo", "mediaeval-results", "groundtruth.npy"))
    text = (recipes_dir() / "bour2021-filters-m96-i224-wbce.toml").read_text()
    assert f"test PR-AUC {average_precision_score(truth, pred, average='macro'):.4f}" in text
    assert f"ROC-AUC {roc_auc_score(truth, pred, average='macro'):.4f}." in text


def test_bour_average_is_the_submitted_run_3():
    cfg = load_config("bour2021-average")
    members = {m.recipe for m in cfg.members}
    assert len(members) == 12
    assert all(r.startswith(("bour2021-convs-m96-", "bour2021-filters-m128-")) for r in members)
    assert len({m.weight for m in cfg.members}) == 1
    assert "0.150872" in read_recipe("bour2021-average").get("description", "") or \
        "0.150872" in (recipes_dir() / "bour2021-average.toml").read_text()


# ---------------------------------------------------------------------------------------------
# one tiny epoch of every recipe


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from musetag.data.synth import make_corpus

    root = tmp_path_factory.mktemp("recipes")
    out = {}
    for task in ("multilabel", "multiclass"):
        make_corpus(root / task, n_clips=12, seconds=1.5, seed=3, task=task, clips_per_artist=1,
                    split_fractions=(0.5, 0.25, 0.25))
        out[task] = root / task / "dataset.toml"
    return out


def tiny_overrides(cfg):
    """Tiny inputs and one step: enough to run every code path of the recipe."""
    sets = ["epochs=1", "progress=false", "max_steps_per_epoch=1", "data.batch_size=2", "data.eval_batch_size=4",
            "data.eval_max_segments=1", "swa.length=1.0", "schedule.cycles=1"]
    if cfg.snapshots.count:
        sets.append("snapshots.count=1")
    wave = cfg.features.get("preset") == "waveform22k"
    crop = 16384 if wave else 32
    sets += [f"data.crop={crop}", f"data.eval_crop={crop}", f"data.eval_hop={crop}"]
    return sets


# the same layers with fewer filters, so that one step of every architecture stays cheap
SHRINK = {
    "bour_convs": ["model.args.channels=[8, 8, 8, 8]"],
    "bour_filters": ["model.args.channels=[8, 8, 8, 8]"],
    "cp_resnet": ["model.args.base_channels=8"],
    "fa_resnet": ["model.args.base_channels=8"],
    "shake_fa_resnet": ["model.args.base_channels=8"],
    "simplecnn": ["model.args.width=4"],
    "resnet2d": ["model.args.width=4"],
    "vgg16": ["model.args.width=4"],
    "resnet1d": ["model.args.width=8"],
    "nnet1": ["model.args.filters=8", "model.args.hidden=16"],
    "nnet2": ["model.args.filters=8", "model.args.hidden=16"],
    "vggish_baseline": ["model.args.channels=[8, 8, 8, 8, 8]"],
    "soundfusion": ["model.args.spec_args={width = 4}", "model.args.wave_args={width = 8}"],
    "mobilenetv2": ["model.args.variant=mobilenetv2_050"],
    "mobilenetv2_attention": ["model.args.variant=mobilenetv2_050", "model.args.segment_frames=16",
                              "model.args.embed_dim=32"],
}


def tiny_for(name, cfg):
    from musetag.models import model_info

    sets = ["epochs=1", "progress=false", "max_steps_per_epoch=1", "data.batch_size=2", "data.eval_batch_size=4",
            "data.eval_max_segments=1", "swa.length=1.0", "schedule.cycles=1"]
    model = cfg.model.name
    member_cfgs = [load_config(m.recipe) for m in cfg.members if m.recipe]
    if member_cfgs:
        model = member_cfgs[0].model.name
    if cfg.snapshots.count or any(m.snapshots.count for m in member_cfgs):
        sets.append("snapshots.count=1")
    if len(cfg.members) > 2:
        # the ensemble machinery with its first two members (every member recipe runs on its own too)
        two = ", ".join(f'{{name = "{m.name}", recipe = "{m.recipe}", weight = {m.weight}}}' for m in cfg.members[:2])
        sets.append(f"members=[{two}]")
    spec = model_info(model).default_input
    crop = max(spec.min_length, 16384 if spec.kind == "waveform" else 32)
    if model == "mobilenetv2_attention":
        crop = 64
    sets += [f"data.crop={crop}", f"data.eval_crop={crop}", f"data.eval_hop={crop}"]
    if cfg.init.path:  # a fine-tune of published weights: the network keeps their shapes, or nothing would load
        return sets
    return sets + SHRINK.get(model, [])


# probes learn from `embed:` datasets, not from these audio corpora: tests/test_probe.py trains them
AUDIO_RECIPES = [n for n in RECIPES if not load_config(n).model.name.startswith("probe_")]


@pytest.mark.slow
@pytest.mark.parametrize("name", AUDIO_RECIPES)
def test_recipe_trains_one_tiny_epoch(name, corpora, tmp_path):
    from musetag.training import train

    cfg = load_config(name)
    task = "multiclass" if name.startswith(MULTICLASS_PREFIXES) else "multilabel"
    result = train(name, data=corpora[task], out=tmp_path / "run", sets=tiny_for(name, cfg))
    run = tmp_path / "run"
    assert (run / "config.toml").exists() and (run / "summary.json").exists()
    preds = np.load(run / "predictions" / "validation.npy")
    targets = np.load(run / "predictions" / "validation_targets.npy")
    assert preds.shape[0] == targets.shape[0] and np.isfinite(preds).all()
    assert result.metric == ("accuracy" if task == "multiclass" else "pr_auc_macro")
