"""GraphiQL for development: the page, its start-up script, and the self-hosted assets (no CDN).

The assets under mlc_graph/static/graphiql/ are installed at build time by `python -m mlc_graph.http.assets`.
`/graphql?token=<jwt>` opens GraphiQL with `Authorization: Bearer <jwt>` in its headers editor (the
token is then dropped from the address bar); `&query=...` prefills the editor.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp import web

ASSET_DIR = Path(__file__).parent / "static" / "graphiql"
ASSET_PREFIX = "/static/graphiql"
INIT_SCRIPT_PATH = "/graphiql/init.js"
REQUIRED_ASSETS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
)

DEMO_QUERY = """# Welcome to MLC Graph. Run this with the play button (Ctrl-Enter).
# Your token is in the Headers tab below; `mlc-graph token --role teacher --id 1` mints another.
query Demo {
  viewer {
    role
    teacher {
      displayName
      students(first: 5) {
        totalCount
        edges { node { displayName lastActiveAt } }
      }
    }
    student {
      displayName
      assignments(first: 5) { edges { node { status dueDate game { title } } } }
    }
  }
}
"""

# Same-origin only: the page must work with the network to everything but this server cut off.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>MLC Graph · GraphiQL</title>
  <link rel="stylesheet" href="{prefix}/graphiql.min.css">
  <style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
  <div id="graphiql" data-endpoint="/graphql">Loading GraphiQL…</div>
  <script src="{prefix}/react.production.min.js"></script>
  <script src="{prefix}/react-dom.production.min.js"></script>
  <script src="{prefix}/graphiql.min.js"></script>
  <script src="{init}"></script>
</body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GraphiQL assets missing</title></head>
<body><h1>GraphiQL is not installed</h1>
<p>Run <code>make assets</code> (<code>python -m mlc_graph.http.assets</code>) and reload.</p></body></html>
"""

_INIT_SCRIPT = """(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var token = params.get("token");
  if (token) {
    // Keep the token out of the address bar, history and screenshots once it has been read.
    params.delete("token");
    var rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  var element = document.getElementById("graphiql");
  var endpoint = element.dataset.endpoint;
  function fetcher(graphQLParams, options) {
    var headers = Object.assign(
      {"Content-Type": "application/json", "Accept": "application/graphql-response+json, application/json"},
      (options && options.headers) || {}
    );
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(graphQLParams),
      credentials: "omit"
    }).then(function (response) { return response.json(); });
  }
  var props = {
    fetcher: fetcher,
    defaultQuery: DEMO_QUERY,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: token ? "headers" : false
  };
  if (token) {
    props.headers = JSON.stringify({Authorization: "Bearer " + token}, null, 2);
  }
  var query = params.get("query");
  if (query) {
    props.query = query;
  }
  ReactDOM.createRoot(element).render(React.createElement(GraphiQL, props));
})();
"""


def assets_installed() -> bool:
    return all((ASSET_DIR / name).is_file() for name in REQUIRED_ASSETS)


def page_response() -> web.Response:
    """The GraphiQL page, or instructions when `make assets` has not run."""
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"}
    if not assets_installed():
        return web.Response(text=_MISSING, status=503, content_type="text/html", headers=headers)
    page = _PAGE.format(prefix=ASSET_PREFIX, init=INIT_SCRIPT_PATH)
    return web.Response(text=page, content_type="text/html", headers=headers)


# JSON is valid JavaScript: the demo query travels as a string literal with every character escaped.
INIT_SCRIPT = _INIT_SCRIPT.replace("DEMO_QUERY", orjson.dumps(DEMO_QUERY).decode()).encode()


async def init_script(_request: web.Request) -> web.Response:
    return web.Response(body=INIT_SCRIPT, content_type="application/javascript", charset="utf-8")


def add_routes(app: web.Application) -> None:
    """Development only (the caller checks): the start-up script and, when installed, the assets."""
    app.router.add_get(INIT_SCRIPT_PATH, init_script)
    if ASSET_DIR.is_dir():
        app.router.add_static(ASSET_PREFIX, ASSET_DIR, append_version=False)
