"""Strict setting names, and the effective configuration with its secrets masked.

pydantic-settings silently ignores an environment variable with the `SYNCFLOW_` prefix that
names no field (even with extra="forbid"), and a nested name (`A__B`) in an env file whose
inner key does not exist; a misspelt setting would then quietly keep its default. Here every
`SYNCFLOW_*` name of the environment and every key of the env files is walked down the
settings models (a dict field takes any key as one step; a JSON object value is checked key
by key) and an unknown one is refused, naming the nearest valid name (difflib).

Not settings, and so let through: the variables of the tooling around them."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

from syncflow.errors import ConfigError

PREFIX = "SYNCFLOW_"
# read by Settings.load(), the local stack script, the CLI's child processes; not fields
NOT_SETTINGS = frozenset({"SYNCFLOW_ENV_FILE", "SYNCFLOW_STACK_DIR", "SYNCFLOW_PYTHON", "SYNCFLOW_CACHE"})
NOT_SETTINGS_PREFIX = "SYNCFLOW_LOCAL_"  # deploy/local/stack.sh's own (ports, the test registry URL)
# settings that no longer exist, and what took their place
REMOVED = {"SYNCFLOW_CONNECTORS__CURSOR_DIR": "connector cursors are kept in the common database now "
                                              "(table connector_cursors of database_schema)"}
ANY_KEY = "<name>"  # a dict step in a candidate name
MASK = "***"
SECRET_NAME = re.compile(r"(api_?keys?|password|passwd|secret|token|credential)", re.IGNORECASE)
NOT_SECRET_SUFFIXES = ("_file", "_url", "_endpoint", "_location", "_path", "_dir", "_s", "_ms")
URL_CREDENTIALS_ANYWHERE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s'\"]*):[^@/\s'\"]*@")
URL_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*)(?::[^@/]*)?@")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):  # Optional[Model], Model | None
        for arg in get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _dict_value_of(annotation: Any) -> tuple[bool, Any]:
    """(True, value annotation) for a dict field (also inside Optional)."""
    unions = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    for candidate in (annotation, *unions):
        if get_origin(candidate) is dict:
            args = get_args(candidate)
            return True, args[1] if len(args) == 2 else Any
    return False, None


def _names_under(annotation: Any, depth: int = 0) -> list[list[str]]:
    """Every name (as parts) below a node: its fields, their fields...; dict steps are ANY_KEY."""
    if depth > 6:
        return []
    model = _model_of(annotation)
    if model is not None:
        names: list[list[str]] = []
        for field, info in model.model_fields.items():
            names.append([field])
            names += [[field, *rest] for rest in _names_under(info.annotation, depth + 1)]
        return names
    is_dict, value = _dict_value_of(annotation)
    if is_dict:
        return [[ANY_KEY]] + [[ANY_KEY, *rest] for rest in _names_under(value, depth + 1)]
    return []


def _env_name(parts: Iterable[str]) -> str:
    return PREFIX + "__".join(parts).upper()


def _nearest(given: list[str], valid: list[str], annotation: Any) -> str | None:
    """The valid name closest to `given` (parts after the valid prefix `valid`), dict steps
    filled in with what was given at that position."""
    candidates = []
    for rest in _names_under(annotation):
        filled = [given[i] if part == ANY_KEY and i < len(given) else part for i, part in enumerate(rest)]
        candidates.append(_env_name([*valid, *filled]))
    found = difflib.get_close_matches(_env_name([*valid, *given]), candidates, n=1, cutoff=0.6)
    if not found:  # compare with the names of this level only
        level = sorted({c for c in candidates if c.count("__") == len(valid)})
        found = difflib.get_close_matches(_env_name([*valid, *given]), level, n=1, cutoff=0.4)
    return found[0] if found else None


def unknown_name(model: type[BaseModel], name: str, value: str | None = None) -> str | None:
    """None when the environment name `name` (SYNCFLOW_A__B) sets a field of `model`, or is
    one of the tooling's own variables; otherwise why not, with the nearest valid name."""
    upper = name.upper()
    if not upper.startswith(PREFIX):
        suggestion = _nearest(name.lower().split("__"), [], model)
        return f"{name} is not a setting: every setting starts with {PREFIX}" + (
            f"; did you mean {suggestion}?" if suggestion else "")
    if upper in NOT_SETTINGS or upper.startswith(NOT_SETTINGS_PREFIX):
        return None
    if upper in REMOVED:
        return f"{name} is no longer a setting: {REMOVED[upper]}"
    parts = upper[len(PREFIX):].lower().split("__")
    return _walk(model, parts, value, name)


def _walk(annotation: Any, parts: list[str], value: Any, name: str, base: tuple[str, ...] = ()) -> str | None:
    """Walk `parts` down from `annotation` (`base`: the valid name above it, for suggestions),
    then a JSON object value key by key."""
    walked = list(base)
    node: Any = annotation
    for i, part in enumerate(parts):
        model = _model_of(node)
        is_dict, dict_value = _dict_value_of(node)
        if model is not None:
            info = model.model_fields.get(part)
            if info is None:
                return _unknown(name, parts[i:], walked, node)
            node = info.annotation
        elif is_dict:
            node = dict_value
        else:
            return f"unknown setting {name}: {_env_name(walked)} takes no sub-settings"
        walked.append(part)
    if isinstance(value, str) and (_model_of(node) is not None or _dict_value_of(node)[0]):
        try:
            value = json.loads(value)
        except ValueError:
            return None  # not JSON: the field's own validation says what is wrong
    if isinstance(value, dict) and (_model_of(node) is not None or _dict_value_of(node)[0]):
        for key, inner in value.items():
            if problem := _walk(node, [str(key).lower()], inner, f"{name} (key {key!r})", tuple(walked)):
                return problem
    return None


def _unknown(name: str, rest: list[str], walked: list[str], node: Any) -> str:
    suggestion = _nearest(rest, walked, node)
    return f"unknown setting {name}" + (f"; did you mean {suggestion}?" if suggestion else "")


def env_file_entries(path: Path) -> dict[str, str | None]:
    """The KEY=value entries of an env file, as pydantic-settings reads it (python-dotenv)."""
    from dotenv import dotenv_values

    return dict(dotenv_values(path))


def check_names(model: type[BaseModel], environ: Mapping[str, str], env_files: Iterable[Path]) -> None:
    """Refuse (ConfigError) unknown SYNCFLOW_* environment variables and unknown env file keys,
    every problem listed, each with the nearest valid name."""
    problems = [f"environment: {p}" for name, value in sorted(environ.items())
                if name.upper().startswith(PREFIX) and (p := unknown_name(model, name, value))]
    for path in env_files:
        if Path(path).exists():
            problems += [f"{path}: {p}" for name, value in env_file_entries(Path(path)).items()
                         if (p := unknown_name(model, name, value))]
    if problems:
        raise ConfigError("; ".join(problems))


def mask_url(value: str) -> str:
    """postgresql://user:pass@host/db -> postgresql://user:***@host/db (also a query's
    password=/token= parameters)."""
    masked = URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m['user'] else f"{m['scheme']}{MASK}@",
                                 value, count=1)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if parts.query:
        query = "&".join(f"{k}={MASK}" if SECRET_NAME.search(k) else f"{k}{'=' if eq else ''}{v}"
                         for k, eq, v in (pair.partition("=") for pair in parts.query.split("&")))
        masked = urlunsplit(parts._replace(query=query))
    return masked


def mask_text(text: str) -> str:
    """Any scheme://user:password@ inside a message, with the password masked."""
    return URL_CREDENTIALS_ANYWHERE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def secret_name(key: str) -> bool:
    """A field or dict key whose value is a secret (not a path, URL or duration about one)."""
    return bool(key and SECRET_NAME.search(key) and not key.lower().endswith(NOT_SECRET_SUFFIXES))


def masked(value: Any, key: str = "") -> Any:
    """A plain JSON-able copy of a settings value with every secret replaced by ***: any
    SecretStr, any field named like a key, password, token or secret (a dict of such: every
    value), and credentials inside URLs."""
    if isinstance(value, (SecretStr, SecretBytes)):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: masked(getattr(value, name), name) for name in type(value).model_fields}
    if isinstance(value, dict):
        if secret_name(key):
            return {k: MASK if v else v for k, v in value.items()}
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        if secret_name(key) and value:
            return MASK
        return mask_url(value) if "://" in value else value
    if isinstance(value, Path):
        return str(value)
    return value


def environment_names(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The SYNCFLOW_* variables of the environment."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k.upper().startswith(PREFIX)}
