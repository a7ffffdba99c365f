"""Pipeline configuration: YAML files in ``configs/`` (OmegaConf) plus ``key=value`` overrides.

``configs/default.yaml`` lists every option with its default; a preset (``--config qwen2_5_vl_7b``) and
command-line overrides (``tracker.name=sam2``) are merged on top. The merged tree is in struct mode, so
a misspelt key is an error rather than a silently ignored option. Sections become the typed settings
dataclasses of each stage with :func:`build_settings`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

#: The repository's configs/ folder (scener1 is installed editable from the repository).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

T = TypeVar("T")

#: Sections whose keys are validated by their settings dataclass rather than listed in default.yaml.
OPEN_SECTIONS = ("tracker.geometric",)


def resolve_config_path(config: str | Path) -> Path:
    """A config given as a path, or as a preset name in ``configs/`` (``qwen2_5_vl_7b``)."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    preset = CONFIG_DIR / f"{config}.yaml"
    if preset.is_file():
        return preset
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config not found: {config} (a YAML path, or one of: {', '.join(names)})")


def _load_yaml(path: Path):
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)  # OmegaConf's loader is a yaml.SafeLoader
    except Exception as exc:  # yaml.YAMLError and OmegaConf's own errors, multi-line
        raise ConfigError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config {path} must be a mapping of sections")
    return cfg


def load_config(config: str | Path | None = None, overrides: Sequence[str] = ()):
    """The default config, merged with ``config`` (path or preset name) and ``overrides`` (``a.b=value``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = _load_yaml(DEFAULT_CONFIG)
    OmegaConf.set_struct(cfg, True)
    for open_section in OPEN_SECTIONS:  # free-form: checked against their dataclass by build_settings
        OmegaConf.set_struct(OmegaConf.select(cfg, open_section), False)
    layers = []
    if config is not None:
        path = resolve_config_path(config)
        if path.resolve() != DEFAULT_CONFIG.resolve():
            layers.append((str(path), _load_yaml(path)))
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {' '.join(bad)}")
    if overrides:
        try:
            layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"bad override: {str(exc).splitlines()[0]}") from None
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or str(exc).splitlines()[0]
            raise ConfigError(f"unknown or invalid option '{key}' (from {where}); see configs/default.yaml") from None
    return cfg


def to_plain(cfg) -> dict[str, Any]:
    """A merged config as plain dicts and lists (interpolations resolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def build_settings(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """Instantiate settings dataclass ``cls`` from a config section, recursing into nested dataclasses.

    Unknown keys and invalid values are :class:`ConfigError`\\ s naming ``where.key``; lists become tuples
    where the field is a tuple.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown option '{where}.{unknown[0]}'; options are: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints.get(name)
        nested = _dataclass_in(hint)
        if nested is not None and isinstance(value, Mapping):
            value = build_settings(nested, value, f"{where}.{name}")
        elif isinstance(value, list) and _is_tuple(hint):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


def _dataclass_in(hint) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
