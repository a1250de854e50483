"""The JSON Schema of the report (``flowaudit/report/v1``), as the package ships it.

``report-v1.schema.json`` beside this module describes the document of ``flowaudit analyze
--format json``; its ``$defs`` hold the pieces (flow, finding, communication, capture, host)
and the records of ``--format jsonl`` (``$defs/jsonl_record``). Nothing here validates: the
schema is data for consumers (and for the tests, which validate every report they make).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "report-v1.schema.json"
# Where the JSONL records' schema says it came from (the report's $id does not resolve).
RECORDS_ID = "https://flowaudit.invalid/schema/report/v1/records"


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The report's JSON Schema as the package ships it (``flowaudit schema`` prints it)."""
    return resources.files("flowaudit.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The report's JSON Schema as a Python object (a new copy on each call)."""
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


def jsonl_schema() -> dict[str, Any]:
    """A schema for one line of ``--format jsonl``: the report schema's ``jsonl_record``, made
    the root of a document that carries the same ``$defs`` (so every ``$ref`` resolves)."""
    report = load_schema()
    return {
        "$schema": report["$schema"],
        "$id": RECORDS_ID,
        "title": "flowaudit report v1, JSONL record",
        "description": (
            "One line of `flowaudit analyze --format jsonl`: a run record, then one record per "
            "flow and one per finding."
        ),
        "$ref": "#/$defs/jsonl_record",
        "$defs": report["$defs"],
    }


def jsonl_schema_text() -> str:
    """``jsonl_schema()`` as JSON text, laid out like the shipped file."""
    return json.dumps(jsonl_schema(), indent=2, ensure_ascii=False) + "\n"
