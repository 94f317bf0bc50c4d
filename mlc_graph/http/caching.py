"""HTTP caching of GET query answers: Cache-Control from the document's hints, a strong ETag, 304s.

Only a GET query whose document's policy allows it and that ran without an error is cacheable
(mlc_graph.execution.cache_policy decides, once per document); every other answer of the API says
`Cache-Control: no-store` (mlc_graph.http.view.json_response), POSTs, mutations and refusals included.

A cacheable answer carries
- `Cache-Control: public, max-age=N` or `private, max-age=N`;
- `ETag`: a strong tag of the exact bytes sent, so each Content-Encoding has its own (suffixed with it);
- `Vary`: what the bytes depend on besides the URL: `Accept` (the media type), `Accept-Encoding`,
  `Origin` (the CORS headers), the cost headers that change the body, and `Authorization` when PRIVATE.
An `If-None-Match` that matches (weak comparison, `*` or a list, RFC 9110 13.1.2) answers
`304 Not Modified` without a body, with the same ETag, Cache-Control and Vary. The operation still ran
(and was counted): the tag is of the answer as it is now.
"""

from __future__ import annotations

import hashlib
import re

from aiohttp import hdrs, web

from mlc_graph.execution.cache_policy import CachePolicy
from mlc_graph.execution.stages import DRY_RUN_HEADER, INCLUDE_FIELDS_HEADER
from mlc_graph.http.compression import encode

NO_STORE = "no-store"
_VARY_AFTER_ENCODING = ", ".join(("Origin", INCLUDE_FIELDS_HEADER, DRY_RUN_HEADER))
_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def vary(policy: CachePolicy, compression: bool) -> str:
    """The request headers a cached answer depends on."""
    value = ("Accept, Accept-Encoding, " if compression else "Accept, ") + _VARY_AFTER_ENCODING
    return value if policy.public else value + ", Authorization"


def entity_tag(body: bytes, encoding: str | None) -> str:
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    return f'"{digest}-{encoding}"' if encoding else f'"{digest}"'


def none_match(header_values: list[str], etag: str) -> bool:
    """Whether If-None-Match (every header of it) matches `etag`: `*`, or the tag, W/ or not."""
    opaque = etag.strip('"')
    for value in header_values:
        if value.strip() == "*":
            return True
        if any(found.group(1) == opaque for found in _TAG.finditer(value)):
            return True
    return False


async def cacheable_response(
    request: web.Request,
    body: bytes,
    status: int,
    content_type: str,
    headers: dict[str, str],
    policy: CachePolicy,
    compression: bool,
) -> web.Response:
    """The answer with its caching headers, compressed here (the tag is of the bytes sent), or a 304."""
    encoding = None
    if compression:
        body, encoding = await encode(body, request.headers.get(hdrs.ACCEPT_ENCODING))
    etag = entity_tag(body, encoding)
    headers = {
        **headers,
        "Cache-Control": policy.cache_control,
        "ETag": etag,
        "Vary": vary(policy, compression),
    }
    if none_match(request.headers.getall(hdrs.IF_NONE_MATCH, []), etag):
        return web.Response(status=304, headers=headers)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    headers["Content-Type"] = content_type
    return web.Response(body=body, status=status, headers=headers)
