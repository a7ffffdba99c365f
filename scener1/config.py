"""Pipeline configuration: YAML files in ``configs/`` (OmegaConf) plus ``key=value`` overrides.

``configs/default.yaml`` lists every option with its default; a preset (``--config qwen2_5_vl_7b``) and
command-line overrides (``tracker.name=sam2``) are merged on top. The merged tree is in struct mode, so
a misspelt key is an error rather than a silently ignored option. Sections become the typed settings
dataclasses of each stage with :func:`build_settings`.
"""

from __future__ import annotations

import dataclasses
import types
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

    Unknown keys, values of the wrong type for a scalar field (``image.num_candidates=abc``) and values the
    dataclass rejects are :class:`ConfigError`\\ s naming ``where.key``; lists become tuples where the field is
    a tuple, integers floats where the field is a float.
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
        else:
            value = coerce_scalar(hint, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


_SCALARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    """``value`` as a field typed as a scalar (``int``, ``float``, ``bool``, ``str``, maybe ``| None``) wants it,
    or a ConfigError naming ``key`` and what was expected; values of other fields pass unchanged (their
    dataclass checks them).

    Numbers written as strings become numbers (PyYAML reads ``5e-5`` without a dot as a string); an integer is
    taken where a float is wanted, and a whole float where an integer is. Anything else would reach the code
    as the wrong type and fail later with an obscure ``TypeError``, or not at all.
    """
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    scalars = [a for a in args if a in _SCALARS]
    optional = type(None) in args
    if not scalars or len(scalars) + optional != len(args):
        return value
    if value is None and optional:
        return value
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and (int in scalars or float in scalars):
        try:
            number = float(value)
        except ValueError:
            number = None
    for kind in scalars:
        if kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str) and number is None:
            return value
        if kind is int and number is not None and number.is_integer():
            return int(number)
        if kind is float and number is not None:
            return number
    expected = " or ".join(_SCALARS[k] for k in scalars) + (" or null" if optional else "")
    raise ConfigError(f"{key} must be {expected}, got {value!r}")


def _dataclass_in(hint) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
