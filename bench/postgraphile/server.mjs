// The PostGraphile baselines of `make bench` (issue 11): `node server.mjs v4|v5 PORT`, run on the Node 22
// of node_modules/.bin/node (bench/baselines.py starts it).
//
// Both versions serve the bench database (DATABASE_URL) from a pool of 10 connections, without
// GraphiQL, mutations or query logging, in NODE_ENV=production. The pool counts the statements it
// sends, so the harness can report statements per request for PostGraphile as it does for MLC Graph
// (which says so in `extensions.sqlStatements`): GET /__bench/statements answers the running total.
import http from "node:http";
import { createRequire } from "node:module";

// PostGraphile 4 lives in v4/ with its own graphql 15 and pg: one tree for both would hand v4's helpers
// v5's graphql 16, and schema types from one graphql are unknown to the other.
const requireV4 = createRequire(new URL("./v4/package.json", import.meta.url));

const [version, portText] = process.argv.slice(2);
const port = Number(portText);
if (!["v4", "v5"].includes(version) || !Number.isInteger(port)) {
  console.error("usage: node server.mjs v4|v5 PORT");
  process.exit(2);
}
const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  console.error("DATABASE_URL is not set");
  process.exit(2);
}

let statements = 0;
const pg = version === "v4" ? requireV4("pg") : (await import("pg")).default;
const pool = new pg.Pool({ connectionString, max: 10 });
pool.on("connect", (client) => {
  const query = client.query.bind(client);
  client.query = (...args) => {
    statements += 1;
    return query(...args);
  };
});

async function v4Handler() {
  const { postgraphile } = requireV4("postgraphile");
  // The flags the issue measured v4 with: dynamic JSON, no default mutations, no GraphiQL.
  return postgraphile(pool, "public", {
    dynamicJson: true,
    disableDefaultMutations: true,
    graphiql: false,
    disableQueryLog: true,
    ignoreRBAC: false,
    setofFunctionsContainNulls: false,
  });
}

async function v5Handler() {
  const { postgraphile } = await import("postgraphile");
  const { PostGraphileAmberPreset } = await import("postgraphile/presets/amber");
  const { makePgService } = await import("postgraphile/adaptors/pg");
  const { grafserv } = await import("postgraphile/grafserv/node");
  const preset = {
    extends: [PostGraphileAmberPreset],
    // v4's flags in v5 terms: no create/update/delete mutations, and every column may be filtered and
    // ordered on (v4's default; v5 limits both to indexed columns through PgIndexBehaviorsPlugin).
    disablePlugins: ["PgMutationCreatePlugin", "PgMutationUpdateDeletePlugin", "PgIndexBehaviorsPlugin"],
    pgServices: [makePgService({ pool, schemas: ["public"] })],
    grafserv: { graphiql: false, graphqlOverGET: false, watch: false },
    grafast: { explain: false },
  };
  const serv = postgraphile(preset).createServ(grafserv);
  return serv.createHandler();
}

const handler = version === "v4" ? await v4Handler() : await v5Handler();
const server = http.createServer((req, res) => {
  if (req.url === "/__bench/statements") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ statements }));
  } else if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  } else {
    handler(req, res);
  }
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => console.log(`postgraphile ${version} on 127.0.0.1:${port}`));
const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
