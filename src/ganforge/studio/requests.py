"""What every studio route needs: the request's JSON body, checked, and the models a person may see."""

from __future__ import annotations

import json

from fastapi import Request

from ganforge.studio.folder import NotFound
from ganforge.studio.security import StudioError, is_owner


def visible(studio, request: Request, name: str):
    """The model, if this person may see it: the owner sees all, others only shareable ones (a private
    model is 'not found' to them, so its name does not leak)."""
    entry = studio.folder.model(name)
    if not is_owner(request) and not studio.setting(name).shareable:
        raise NotFound(name)
    return entry


async def read_json(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise StudioError(422, "bad_request", detail="the body is not JSON") from None
    if not isinstance(body, dict):
        raise StudioError(422, "bad_request", detail="the body must be a JSON object")
    return body
