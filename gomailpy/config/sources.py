"""Where settings come from, and what is wrong with them, for
`gomailpy.config.settings.load_settings`.

- `read_yaml`: a config file as a mapping of sections, or a `ConfigError` naming the file (and
  the line and column of a YAML error);
- `find_secrets`: secret keys written in a file (refused: secrets come from the environment);
- `Environment`: pydantic-settings' environment source (`<PREFIX><SECTION>__<KEY>`), read from
  a given mapping, with values decoded as in the YAML file (`Settings.settings_customise_sources`
  puts it above pydantic-settings' YAML source, which pydantic-settings merges it over);
- `env_origins` / `problems`: every validation error as `<file or variable>: <dotted key>:
  <what is wrong>`.

Everything here works on the settings class it is given, so that it knows nothing of the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource

from gomailpy.errors import ConfigError

ENV_NULLS = frozenset({"", "~", "null", "Null", "NULL"})  # what YAML reads as null: unset


def read_yaml(path: Path, sections: Iterable[str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        names = ", ".join(sections)
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({names})")
    return data


def secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The dotted paths of every `SecretStr` field under `model`."""
    paths: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= secret_paths(annotation, (*prefix, name))
        elif "SecretStr" in str(annotation):
            paths.add((*prefix, name))
    return paths


def find_secrets(
    data: Any, secrets: set[tuple[str, ...]], prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """The paths in `data` (a file's mapping) that give a secret a value."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, str(key))
            if path in secrets and value not in (None, ""):
                found.append(path)
            else:
                found.extend(find_secrets(value, secrets, path))
    return found


class Environment(EnvSettingsSource):
    """pydantic-settings' environment source over `environ` (not always `os.environ`: tests pass
    their own). Lists are read as YAML, like the file's; `null` (or nothing) sets a key to None,
    except for the variables in `exact` (secrets), which are always their exact text."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str], exact: set[str]
    ) -> None:
        self._environ = environ
        self._exact = {name.lower() for name in exact}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name.lower(): None if value in ENV_NULLS and name.lower() not in self._exact else value
            for name, value in self._environ.items()
        }

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        # `[q1, q2]` as in the file (JSON is YAML too); text that is no YAML stays text, for the
        # field's own validator (api.api_key_hashes also reads "hash1, hash2").
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value


def env_origins(
    settings_cls: type[BaseSettings], env: Mapping[str, str]
) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Which key each variable with the settings' prefix sets (for messages), and the problems
    of variables naming no section (pydantic-settings would pass over them, hiding a typo)."""
    prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()
    nesting = str(settings_cls.model_config.get("env_nested_delimiter", "__"))
    sections = settings_cls.model_fields
    origins: dict[tuple[str, ...], str] = {}
    unknown = []
    for name in sorted(env):
        if not name.upper().startswith(prefix):
            continue
        path = tuple(part.lower() for part in name[len(prefix) :].split(nesting))
        if path[0] in sections:
            origins[path] = f"environment {name}"
        elif len(path) > 1:
            known = ", ".join(sections)
            unknown.append(f"environment {name}: {path[0]}: unknown key; known keys here: {known}")
    return origins, unknown


def problems(
    exc: ValidationError,
    settings_cls: type[BaseModel],
    source: str,
    origins: dict[tuple[str, ...], str],
    names: Mapping[str, list[str | None]] | None = None,
    kinds: Mapping[str, type[BaseModel]] | None = None,
) -> list[str]:
    """Each error of `exc` as `<where>: <dotted key>: <what is wrong>`; `where` is the variable
    that set the key (or a whole section around it), else `source`. In a list of named items
    (`names`: section -> each item's name), an item is written `section[1] (its-name)`; `kinds`
    are the tags of a discriminated union in such a list (tag -> model)."""
    found = []
    kinds = kinds or {}
    for error in exc.errors():
        loc, model = _without_tag(tuple(error["loc"]), kinds)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, str((error.get("ctx") or {}).get("discriminator", "")).strip("'"))
        key = _key(loc, names or {})
        path = tuple(str(part) for part in loc)
        where = next(
            (origins[path[:n]] for n in range(len(path), 0, -1) if path[:n] in origins), source
        )
        described = _describe(error, kinds)
        if not key or described.startswith(f"{key.split(' ')[0]}["):  # it names its keys
            found.append(f"{where}: {described}")
        elif error["type"] == "extra_forbidden":
            known = ", ".join(
                model.model_fields if model is not None else _known_keys(settings_cls, loc[:-1])
            )
            found.append(f"{where}: {key}: unknown key; known keys here: {known}")
        else:
            found.append(f"{where}: {key}: {described}")
    return found


def _without_tag(
    loc: tuple[Any, ...], kinds: Mapping[str, type[BaseModel]]
) -> tuple[tuple[Any, ...], type[BaseModel] | None]:
    """`loc` without the tag a discriminated union puts after the item's index
    (providers.1.ses.region: the item's own `kind` says it), and the model of that tag."""
    for n in range(1, len(loc) - 1):
        if isinstance(loc[n - 1], int) and isinstance(loc[n], str) and loc[n] in kinds:
            return (*loc[:n], *loc[n + 1 :]), kinds[loc[n]]
    return loc, None


def _key(loc: tuple[Any, ...], names: Mapping[str, list[str | None]]) -> str:
    key = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            listed = names.get(str(loc[n - 1]), []) if n == 1 else []
            name = listed[part] if part < len(listed) else None
            key += f"[{part}]" + (f" ({name})" if name else "")
        else:
            key += f".{part}" if key else str(part)
    return key


def _describe(error: Any, kinds: Mapping[str, Any] | None = None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    messages: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
        "less_than": lambda: f"must be < {ctx.get('lt')}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be a string",
        "list_type": lambda: "must be a list",
        "model_type": lambda: "must be a mapping of keys",
        "dict_type": lambda: "must be a mapping of keys",
        "missing": lambda: "is required",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "too_short": lambda: f"must have at least {ctx.get('min_length')} item(s)",
        "union_tag_invalid": lambda: (
            f"unknown kind {ctx.get('tag')!r}; one of {ctx.get('expected_tags')}"
        ),
        "union_tag_not_found": lambda: f"is required: one of {', '.join(kinds or ())}",
        "string_pattern_mismatch": lambda: (
            "must be lower-case letters, digits, '-' or '_' (at most 63, starting with a letter"
            " or digit)"
        ),
    }
    if kind in messages:
        return messages[kind]()
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _known_keys(model: Any, path: tuple[Any, ...]) -> list[str]:
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)
