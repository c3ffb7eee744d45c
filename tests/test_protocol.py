"""The protocol's table of modes matches the model server's real form fields, and needs
nothing but the standard library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geolibre_ml.modelserver.app import create_app
from geolibre_ml.protocol import MODES, FormField


@pytest.fixture(scope="module")
def server_openapi() -> dict:
    return create_app().openapi()


def form_properties(openapi: dict, path: str) -> tuple[dict, list[str]]:
    """The multipart form of ``POST path``: its properties and required names."""
    body = openapi["paths"][path]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    if "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema["properties"], schema.get("required", [])


def json_type(prop: dict) -> str:
    """A property's type, without the ``null`` of optional fields."""
    types = [p["type"] for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    assert len(types) == 1, prop
    return types[0]


def bound(prop: dict, key: str) -> float | None:
    values = [p[key] for p in prop.get("anyOf", [prop]) if key in p]
    return values[0] if values else None


@pytest.mark.parametrize("name", list(MODES))
def test_the_table_is_the_model_servers_form(server_openapi: dict, name: str) -> None:
    mode = MODES[name]
    properties, required = form_properties(server_openapi, mode.path)
    assert mode.field_names() == list(properties)
    assert [f.name for f in mode.fields if f.required] == required
    for field in mode.fields:
        prop = properties[field.name]
        expected_type = "string" if field.type == "file" else field.type
        assert json_type(prop) == expected_type, field.name
        assert prop.get("default") == field.default, field.name
        assert bound(prop, "minimum") == field.minimum, field.name
        assert bound(prop, "maximum") == field.maximum, field.name


def test_form_schema_is_json_schema_of_the_fields() -> None:
    schema = MODES["text"].form_schema()
    assert schema["type"] == "object"
    # file, or source instead; prompt, or prompts instead: each pair checked by the server.
    assert schema["required"] == []
    assert schema["properties"]["confidence_threshold"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0.5,
        "description": MODES["text"].own_fields[1].description,
    }
    with pytest.raises(ValueError, match="type"):
        FormField("x", "float", "not a JSON-schema type")


def test_the_protocol_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import geolibre_ml.protocol;"
        "print(sorted(m for m in sys.modules if m.startswith('geolibre_ml')"
        " or m.split('.')[0] in ('numpy', 'fastapi', 'pydantic', 'starlette', 'httpx')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['geolibre_ml', 'geolibre_ml.protocol']"


def test_the_protocol_and_the_library_agree_on_the_concept_limit() -> None:
    from geolibre_ml import protocol
    from geolibre_ml.segment import prompts

    assert protocol.MAX_CONCEPTS == prompts.MAX_CONCEPTS
    assert str(prompts.MAX_CONCEPTS) in protocol.form_field("prompts", "text").description
