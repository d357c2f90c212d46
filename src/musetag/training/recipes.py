"""Recipe files: the TOML recipes shipped in ``musetag/recipes`` or given as a path, their ``base = "..."``
inheritance, the resolved configuration (:func:`load_config`: recipe + overrides + ``--set``) and the
``config.toml`` written into a run folder and read back. The schema they are checked against is
:mod:`musetag.training.config`."""
from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from musetag.errors import ConfigError
from musetag.textfiles import read_toml
from musetag.training.config import TrainConfig, _apply_set, check_sets, merge, parse_set

__all__ = ["dump_toml", "dumps_toml", "find_recipe", "list_recipes", "load_config", "load_toml_config", "read_recipe",
           "recipes_dir"]


# ---------------------------------------------------------------------------------------------
# recipes


def recipes_dir() -> Path:
    return Path(str(resources.files("musetag") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the recipes shipped with musetag."""
    return sorted(p.stem for p in recipes_dir().glob("*.toml") if not p.stem.startswith("_"))


def find_recipe(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {str(path)!r} does not exist")
        return path
    candidate = recipes_dir() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    names = list_recipes()
    close = difflib.get_close_matches(str(name_or_path), names, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"no recipe named {str(name_or_path)!r}: give a .toml file or one of the shipped recipes "
        f"(musetag train --list).{hint}"
    )


def read_recipe(name_or_path: str | Path, _seen: tuple = ()) -> dict:
    """The recipe's table, with ``base = "other-recipe"`` inheritance resolved."""
    path = find_recipe(name_or_path)
    data = read_toml(path, "recipe")
    base = data.pop("base", None)
    own_name = data.get("recipe") or path.stem
    if base:
        if str(base) in _seen:
            raise ConfigError(f"recipe {path}: 'base' chain loops back to {base!r}")
        parent = read_recipe(base, _seen + (str(base),))
        child_model = data.get("model", {})
        if "name" in child_model and child_model["name"] != parent.get("model", {}).get("name"):
            parent.setdefault("model", {})["args"] = {}  # another architecture: its own arguments only
        child_ct = data.get("coteaching", {})
        if "peer" in child_ct and child_ct["peer"] != parent.get("coteaching", {}).get("peer"):
            parent.setdefault("coteaching", {})["peer_args"] = {}
        data = merge(parent, data)
    data["recipe"] = own_name
    return data


def load_config(
    recipe: str | Path | dict | TrainConfig | None = None,
    *,
    sets: list[str] | None = None,
    overrides: dict | None = None,
) -> TrainConfig:
    """Resolve a recipe (name, path, dict or config) plus overrides into a validated TrainConfig."""
    if isinstance(recipe, TrainConfig):
        data = recipe.to_dict()
        source = "config"
    elif isinstance(recipe, dict):
        data = dict(recipe)
        source = "config"
    elif recipe is None:
        data = {}
        source = "defaults"
    else:
        path = find_recipe(recipe)
        data = read_recipe(recipe)
        source = str(path)
    if overrides:
        data = merge(data, overrides)
    before, set_keys = data, set()
    sets = check_sets(sets)
    for item in sets:
        key, value = parse_set(item)
        set_keys.add(key)
        data = _apply_set(data, key, value)
    from musetag.training.run_length import follow_epochs

    data = follow_epochs(before, data, set_keys)  # the recipe's schedule follows --set epochs=N
    source = "--set" if sets else source
    return TrainConfig.from_dict(data, source=source)


# ---------------------------------------------------------------------------------------------
# TOML writing (tomli-w; the reading side is the standard library's tomllib)


def dumps_toml(data: dict) -> str:
    import tomli_w

    try:
        return tomli_w.dumps(data)
    except TypeError as exc:  # None and objects TOML has no type for
        raise ConfigError(f"cannot write the configuration as TOML: {exc}") from None


def dump_toml(cfg: TrainConfig, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    text = dumps_toml(cfg.to_dict())
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    from musetag.outputs import write_text_atomic

    write_text_atomic(path, text)  # other ranks may read it while rank 0 rewrites it (a resume's --set)
    return path


def load_toml_config(path: str | Path) -> TrainConfig:
    """Read a resolved ``config.toml`` (as written into a run folder)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is this a musetag run folder?")
    return TrainConfig.from_dict(read_toml(path), source=str(path))
