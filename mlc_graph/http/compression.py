"""Response compression: brotli or gzip for bodies over 1 KB when the client accepts them.

Only complete `web.Response` bodies are compressed: WebSocket upgrades and streamed responses
(`text/event-stream`, or any StreamResponse) go out as they are, so events are never held back in a
compressor's buffer. Bodies that are already encoded, or small, are left alone: below ~1 KB the headers
cost more than compression saves.
"""

from __future__ import annotations

import asyncio
import zlib

import brotli  # type: ignore[import-untyped]
from aiohttp import web

MIN_BYTES = 1024
# Above this, compress off the event loop so one big response does not stall every other request.
THREAD_BYTES = 256 * 1024
# The fastest settings: CPU is this server's scarce resource (issue 7), and on GraphQL JSON they cost
# 2-5x less than brotli 4 / gzip 6 for bodies only ~12 % larger (measured on a 15 KB and an 84 KB body).
BROTLI_QUALITY = 1
GZIP_LEVEL = 1
_EXCLUDED_TYPES = ("text/event-stream", "image/", "video/", "audio/", "application/zip", "font/woff")
_MAX_ACCEPT_CACHE = 256
_accept_cache: dict[str, str | None] = {}


def choose_encoding(accept_encoding: str | None) -> str | None:
    """'br', 'gzip' or None, honouring q-values (q=0 refuses); brotli wins a tie."""
    if not accept_encoding:
        return None
    cached = _accept_cache.get(accept_encoding)
    if cached is not None or accept_encoding in _accept_cache:
        return cached
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        quality = 1.0
        params = params.strip().replace(" ", "")
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        weights[name.strip().lower()] = quality
    star = weights.get("*", 0.0)
    br, gzip = weights.get("br", star), weights.get("gzip", star)
    choice = None
    if br > 0 and br >= gzip:
        choice = "br"
    elif gzip > 0:
        choice = "gzip"
    if len(_accept_cache) < _MAX_ACCEPT_CACHE:
        _accept_cache[accept_encoding] = choice
    return choice


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "br":
        compressed: bytes = brotli.compress(body, quality=BROTLI_QUALITY)
        return compressed
    # wbits 16 + MAX_WBITS: a gzip container rather than a raw zlib stream.
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


def _compressible(response: web.StreamResponse) -> bytes | None:
    if type(response) is not web.Response:  # WebSocketResponse, FileResponse, streams
        return None
    body = response.body
    if not isinstance(body, bytes) or len(body) <= MIN_BYTES:
        return None
    if response.status in (204, 206, 304) or "Content-Encoding" in response.headers:
        return None
    content_type = response.content_type
    if content_type.startswith(_EXCLUDED_TYPES):
        return None
    return body


async def maybe_compress(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Compress `response` in place when it qualifies and the client accepts an encoding we have."""
    body = _compressible(response)
    if body is None:
        return response
    # Whatever we decide, caches must key on the client's Accept-Encoding.
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Accept-Encoding"
    elif "accept-encoding" not in vary.lower():
        response.headers["Vary"] = vary + ", Accept-Encoding"
    packed, encoding = await encode(body, request.headers.get("Accept-Encoding"))
    if encoding is None:
        return response
    assert isinstance(response, web.Response)
    response.body = packed
    response.headers["Content-Encoding"] = encoding
    return response


async def encode(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """`body` as it goes out to a client sending `accept_encoding`, and its Content-Encoding (None: as is);
    for callers that must know the bytes before sending them (mlc_graph.http.caching: the ETag)."""
    encoding = choose_encoding(accept_encoding) if len(body) > MIN_BYTES else None
    if encoding is None:
        return body, None
    if len(body) > THREAD_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, compress, body, encoding), encoding
    return compress(body, encoding), encoding
