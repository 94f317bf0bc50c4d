"""Response headers every route shares: no `Server` header naming Python's and aiohttp's versions.

aiohttp adds `Server: Python/3.11 aiohttp/x` while it prepares headers, before `on_response_prepare`
runs; the hook removes it there, so GraphQL, probes, static files, errors and the WebSocket handshake all
go out without it (a version string only helps whoever looks for a known hole). The few answers aiohttp's
protocol layer makes before routing (400 for an unparsable request) skip the hook; they say
`Server: mlc-graph` instead (mlc_graph.http.aiohttp_compat).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from mlc_graph.http.aiohttp_compat import hide_server_versions


async def _drop_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall(hdrs.SERVER, None)


def install(app: web.Application) -> None:
    hide_server_versions()
    app.on_response_prepare.append(_drop_server_header)
