"""Response headers every route shares: no `Server` header naming Python's and aiohttp's versions.

aiohttp adds `Server: Python/3.11 aiohttp/x` while it prepares headers, before `on_response_prepare`
runs; the hook removes it there, so GraphQL, probes, static files, errors and the WebSocket handshake all
go out without it (a version string only helps whoever looks for a known hole).
"""

from __future__ import annotations

from aiohttp import hdrs, web


async def _drop_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall(hdrs.SERVER, None)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(_drop_server_header)
