"""The one place MLC Graph reaches into aiohttp's internals; tested with aiohttp 3.14.5.

`aiohttp.web_response.SERVER_SOFTWARE` is the `Server` value aiohttp writes into every response it
prepares (`Python/3.x aiohttp/x`). Routed responses lose the header in `on_response_prepare`
(mlc_graph.http.headers), but answers aiohttp's protocol layer makes itself, such as 400 for a request
line it cannot parse, never reach an application's hooks: for those the value is replaced by one that
names no versions. tests/http/test_headers.py sends such a request over a raw socket, so an aiohttp that
stops reading this name fails there.
"""

from __future__ import annotations

from aiohttp import web_response

TESTED_AIOHTTP = ("3.14.5",)
# What protocol-level error responses say instead of the interpreter's and aiohttp's versions.
SERVER_NAME = "mlc-graph"


def hide_server_versions() -> None:
    # Process-wide by nature (aiohttp reads a module global); idempotent, so every app may call it.
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
