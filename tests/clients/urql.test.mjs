// urql's core client as README "Clients" sets it up: persisted queries (the hash first, over GET), the
// fetch exchange, and a subscription exchange backed by graphql-ws.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { createClient as createWsClient } from "graphql-ws";
import { pipe, subscribe } from "wonka";
import WebSocket from "ws";

import { BOARD, catalogue, SUBMIT_SCORE, fixture, player, scoreInput, within } from "./fixture.mjs";

const CATALOGUE = catalogue("UrqlCatalogue");
const me = player("urql");

/** Records each request's method and whether it carried the document, the hash, or both. */
function urqlClient(requests, ws) {
  return new Client({
    url: fixture.httpUrl,
    fetch: async (input, init = {}) => {
      const method = init.method ?? "GET";
      const url = new URL(String(input));
      const body = method === "POST" ? JSON.parse(init.body) : null;
      const extensions = body ? body.extensions : JSON.parse(url.searchParams.get("extensions") ?? "null");
      const query = body ? body.query : url.searchParams.get("query");
      requests.push({ method, query: Boolean(query), hash: Boolean(extensions?.persistedQuery) });
      return fetch(input, init);
    },
    fetchOptions: () => ({ headers: { authorization: `Bearer ${me.token}` } }),
    exchanges: [
      cacheExchange,
      persistedExchange({ preferGetForPersistedQueries: true }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return { subscribe: (sink) => ({ unsubscribe: ws.subscribe(input, sink) }) };
        },
      }),
    ],
  });
}

test("a persisted query over GET answers the catalogue; a mutation over POST writes the score", async () => {
  const requests = [];
  const ws = createWsClient({ url: fixture.wsUrl, webSocketImpl: WebSocket, connectionParams: { token: me.token } });
  try {
    const client = urqlClient(requests, ws);
    const catalogue = await client.query(CATALOGUE, { first: 2 }).toPromise();
    assert.equal(catalogue.error, undefined, String(catalogue.error));
    assert.deepEqual(
      catalogue.data.games.edges.map(({ node }) => [node.title, node.category.name, node.level.position]),
      fixture.newestTitles.slice(0, 2).map((title) => [title, fixture.categoryName, fixture.levelPosition]),
    );
    const written = await client.mutation(SUBMIT_SCORE, { input: scoreInput(me.gameId, 275) }).toPromise();
    assert.equal(written.error, undefined, String(written.error));
    assert.equal(written.data.submitScore.score.score, 275);
    assert.equal(written.data.submitScore.bestScore.score, 275);
    assert.deepEqual(requests, [
      { method: "GET", query: false, hash: true }, // the hash alone: not known yet
      { method: "GET", query: true, hash: true }, // the retry with the document registers it
      { method: "POST", query: true, hash: false }, // mutations are not persisted by default
    ]);
    // A second client now gets the catalogue from the hash alone.
    const again = [];
    const second = await urqlClient(again, ws).query(CATALOGUE, { first: 2 }).toPromise();
    assert.deepEqual(second.data, catalogue.data);
    assert.deepEqual(again, [{ method: "GET", query: false, hash: true }]);
  } finally {
    await ws.dispose();
  }
});

test("the subscription exchange delivers the board, then the update a new best score causes", async () => {
  const ws = createWsClient({ url: fixture.wsUrl, webSocketImpl: WebSocket, connectionParams: { token: me.token } });
  const client = urqlClient([], ws);
  const boards = [];
  let stop;
  try {
    const best = await within(10_000, "the board showing 990", (resolve, reject) => {
      stop = pipe(
        client.subscription(BOARD, { game: me.gameId }),
        subscribe((result) => {
          if (result.error) return reject(result.error);
          boards.push(result.data.leaderboardUpdated);
          if (boards.length === 1) {
            client.mutation(SUBMIT_SCORE, { input: scoreInput(me.gameId, 990) }).toPromise().catch(reject);
          } else if (result.data.leaderboardUpdated.viewerEntry?.score === 990) {
            resolve(result.data.leaderboardUpdated);
          }
        }),
      ).unsubscribe;
    });
    assert.equal(best.entries[0].score, 990);
    assert.equal(best.entries[0].student.id, me.studentId);
    assert.equal(best.viewerEntry.rank, 1);
  } finally {
    stop?.();
    await ws.dispose();
  }
});
