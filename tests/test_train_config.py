"""Training config: recipes, overrides, validation errors, TOML round trip."""
import tomllib

import pytest

from musetag.errors import ConfigError
from musetag.training.config import TrainConfig, parse_set, resolved_final
from musetag.training.recipes import dump_toml, dumps_toml, load_config, load_toml_config


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = load_config(None, sets=["optim.lr=0.5", "model.args.width=16", "augment.random_scale=[0.9, 1.1]",
                                  'members=[]'])
    path = dump_toml(cfg, tmp_path / "config.toml", header="test")
    assert load_toml_config(path) == cfg
    assert cfg.optim.lr == 0.5 and cfg.model.args == {"width": 16}


def test_set_values_are_parsed_as_toml():
    assert parse_set("optim.lr=1e-3") == ("optim.lr", 1e-3)
    assert parse_set("swa.enabled=true") == ("swa.enabled", True)
    assert parse_set("model.name=cp_resnet") == ("model.name", "cp_resnet")
    assert parse_set("augment.random_scale=[0.8,1.2]") == ("augment.random_scale", [0.8, 1.2])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set("optim.lr")


@pytest.mark.parametrize("item, message", [
    ("optim.lrr=1", "unknown key 'optim.lrr' .*did you mean 'optim.lr'"),
    ("optim.name=sgdd", "optim.name = 'sgdd' .*sgd, adam, adamw, amsgrad"),
    ("schedule.name=linear", "schedule.name .*cosine"),
    ("epochs=0", "epochs"),
    ("epochs=2.5", "epochs .*integer"),
    ("swa.enabled=yes", "swa.enabled .*true or false"),
    ("nosuch=1", "unknown key 'nosuch'"),
    ("augment.mixup_prob=2", "augment.mixup_prob"),
    ("final=swa", "swa.enabled"),
    ("coteaching.enabled=true", "coteaching.peer"),
    ("loss.name=hinge", "loss.name .*wbce"),
    ("init.freeze_stages=2", "needs init.path .*--init-from.* or coteaching.peer_init .*--init-peer-from"),
])
def test_bad_keys_and_values_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, sets=[item])


def test_recipe_inheritance_and_unknown_recipe(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('epochs = 7\n[optim]\nname = "sgd"\nlr = 0.5\n')
    child = tmp_path / "child.toml"
    child.write_text(f'base = "{base}"\n[optim]\nlr = 0.1\n')
    cfg = load_config(child)
    assert (cfg.epochs, cfg.optim.name, cfg.optim.lr, cfg.recipe) == (7, "sgd", 0.1, "child")
    with pytest.raises(ConfigError, match="no recipe named 'bour2021-convs-m96-i128-bcee'"):
        load_config("bour2021-convs-m96-i128-bcee")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_members_are_typed_and_checked():
    cfg = load_config({"members": [{"name": "a", "set": {"model.name": "x"}}, {"name": "b", "weight": 2.0}]})
    assert [m.name for m in cfg.members] == ["a", "b"] and cfg.members[1].weight == 2.0
    text = dumps_toml(cfg.to_dict())
    assert TrainConfig.from_dict(tomllib.loads(text)) == cfg
    with pytest.raises(ConfigError, match="duplicate"):
        load_config({"members": [{"name": "a"}, {"name": "a"}]})


def test_final_auto_follows_the_strategy():
    assert resolved_final(load_config(None)) == "best"
    assert resolved_final(load_config(None, sets=["swa.enabled=true"])) == "swa"
    assert resolved_final(load_config(None, sets=["snapshots.count=3"])) == "snapshots"
    assert resolved_final(load_config(None, sets=["early_stopping.per_class=true"])) == "per_class"


def test_choosing_another_architecture_starts_from_its_own_arguments():
    cfg = load_config("demo", sets=["model.name=crnn"])
    assert cfg.model.args == {}
    cfg = load_config("demo", sets=["model.name=crnn", "model.args.hidden=8"])
    assert cfg.model.args == {"hidden": 8}
    assert load_config("demo", sets=["model.args.width=3"]).model.args["width"] == 3
    nnet = load_config("soundfusion-nnet1")  # its base recipe's SimpleCNN width does not leak in
    assert nnet.model.name == "nnet1" and "width" not in nnet.model.args
