"""Load and validate a workflow config against src/sftrl/schemas/config.schema.yaml.

The Snakefile and the CLI both go through `load_config`/`validate_config`, so a bad config
fails before any job starts, with a message that names the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sftrl.checks import plan_problems

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # in the package
# The workflow's top-level defaults; the package is installed editable from its checkout.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


class ConfigError(ValueError):
    """A config value is missing, misspelt or out of range."""


def _with_defaults(validator_class):
    """A validator that fills `default` values of the schema into the instance as it goes."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {})) + sorted(
            error.schema.get("patternProperties", {})
        )
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        extra = sorted(
            name
            for name in set(error.instance) - set(error.schema.get("properties", {}))
            if not any(p.search(name) for p in patterns)
        )
        where = f"{key}." if error.absolute_path else ""
        return (
            f"config key {where}{extra[0] if extra else '?'} is not allowed "
            f"(allowed keys{' under ' + key if error.absolute_path else ''}: {', '.join(allowed)})"
        )
    if error.validator == "enum":
        return f"config key {key} = {error.instance!r}: must be one of {error.validator_value}"
    allowed = error.schema.get("description")
    hint = f" ({allowed})" if allowed else ""
    return f"config key {key} = {error.instance!r}: {error.message}{hint}"


def _semantic_checks(config: dict) -> list[str]:
    """Constraints JSON Schema cannot express: references between sections."""
    problems = []
    rules = config["game"]["rules"]
    for role in ("train_rule", "ood_rule"):
        name = config["game"][role]
        if name not in rules:
            problems.append(
                f"config key game.{role} = {name!r}: no such rule (defined: {sorted(rules)})"
            )
    epochs = config["sft"]["epochs"]
    if sorted(epochs) != epochs or len(set(epochs)) != len(epochs):
        problems.append(f"config key sft.epochs = {epochs!r}: must be strictly increasing")
    starts = config["rl"]["start_epochs"]
    if starts is not None:
        missing = [e for e in starts if e not in epochs]
        if missing:
            problems.append(
                f"config key rl.start_epochs = {starts!r}: {missing} not in sft.epochs {epochs}"
            )
    if config["model"]["source"] == "hf" and not config["model"]["hf_path"]:
        problems.append("config key model.hf_path = None: required when model.source is 'hf'")
    for method in ("uv", "uv_random"):  # the methods that replace top/tail index ranges
        for i, entry in enumerate(config["surgery"][method]):
            if entry.get("top", 0) == 0 and entry.get("tail", 0) == 0:
                problems.append(
                    f"config key surgery.{method}.{i} = {entry!r}: top and tail are both 0"
                )
    from sftrl import chat, mllama  # models, #11: templates, text-only Llama-3.2-Vision, vLLM
    from sftrl.vllm_generation import backend_problems

    problems += chat.config_problems(config) + mllama.config_problems(config)
    problems += backend_problems(config)
    return problems


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Validate in place (filling defaults) and return the config; raise ConfigError otherwise."""
    schema = schema or load_schema()
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    problems = _semantic_checks(config) or plan_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def load_config(*paths: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Merge YAML files left to right (later keys win, nested dicts merged), then validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as f:
            merge_into(merged, yaml.safe_load(f) or {})
    if overrides:
        merge_into(merged, overrides)
    return validate_config(merged)


def merge_into(base: dict, update: dict) -> dict:
    """Recursive dict update, the way Snakemake merges --configfile layers."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
