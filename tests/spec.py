"""Validate what the client sends against the official OpenAPI description (a copy lives here)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS31Validator

SPEC_PATH = Path(__file__).with_name("openai-chat-files-batches.yaml")


@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


def validate(schema_name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches schema ``NAME``."""
    spec = _spec()
    if schema_name not in spec["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in {SPEC_PATH.name}")
    schema = {"components": spec["components"], "$ref": f"#/components/schemas/{schema_name}"}
    OAS31Validator(schema).validate(instance)
