"""Every JSON body of the APIs is checked for values no field can hold (a lone surrogate from the
``"\\ud800"`` escape, the NaN/Infinity literals Python's ``json`` accepts) before a route reads
it: a 422 naming the field, instead of a 500 when the text is written out or a NaN that slips
past a range check. The engine's readers check the payloads they build requests from the same
way (``check_json_values``); this covers the routes that do not go through them (options...).
"""

from __future__ import annotations

import json
import re

from fastapi import HTTPException, Request

from modules.processing.errors import RequestValidationError
from modules.processing.intake.json_values import check_json_values

__all__ = ["check_body_values"]

# Only a body holding one of these can hold a bad value; the rest (nearly all) are not parsed twice.
_SUSPECT = re.compile(rb"\\u[dD][89a-fA-F]|NaN|Infinity")


async def check_body_values(request: Request) -> None:
    """A route dependency: HTTP 422 naming the first field of a JSON body that holds a lone
    surrogate or a NaN/Infinity number."""
    if request.method not in ("POST", "PUT", "PATCH") or "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()  # cached by Starlette: the route reads the same bytes
    if not _SUSPECT.search(body):
        return
    try:
        value = json.loads(body)
    except ValueError:
        return  # malformed JSON: the route's own parser answers it
    try:
        check_json_values(value)
    except RequestValidationError as error:
        raise HTTPException(422, f"{error.field}: {error.message}") from None
