// Apollo Client as the web SPA sets it up (README "Clients"): automatic persisted queries over GET for
// queries, an HTTP link for mutations and a graphql-ws link for subscriptions, split by operation type.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { BOARD, catalogue, SUBMIT_SCORE, fixture, player, scoreInput, sha256, within } from "./fixture.mjs";

const CATALOGUE = catalogue("ApolloCatalogue");
const me = player("apollo");

/** Every request Apollo sends: its method and what it carried (the hash, the document). */
function recordingFetch(log) {
  return async (input, init = {}) => {
    const url = new URL(String(input));
    const method = init.method ?? "GET";
    const body = method === "POST" ? JSON.parse(init.body) : null;
    const extensions = body ? body.extensions : JSON.parse(url.searchParams.get("extensions") ?? "null");
    const query = body ? body.query : url.searchParams.get("query");
    const response = await fetch(input, init);
    log.push({
      method,
      hash: extensions?.persistedQuery?.sha256Hash ?? null,
      query: query ?? null,
      status: response.status,
      cacheControl: response.headers.get("cache-control"),
      etag: response.headers.get("etag"),
    });
    return response;
  };
}

function apolloClient(log, wsClient) {
  const http = new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({
      uri: fixture.httpUrl,
      headers: { authorization: `Bearer ${me.token}` },
      fetch: recordingFetch(log),
    }),
  );
  const link = wsClient
    ? ApolloLink.split(
        ({ query }) => {
          const definition = getMainDefinition(query);
          return definition.kind === "OperationDefinition" && definition.operation === "subscription";
        },
        new GraphQLWsLink(wsClient),
        http,
      )
    : http;
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

const sockets = [];
after(async () => {
  for (const socket of sockets) await socket.dispose();
});

test("APQ: the hash alone over GET, the document once on a miss, then the hash alone is enough", async () => {
  const log = [];
  const first = await apolloClient(log).query({ query: gql(CATALOGUE), variables: { first: 3 } });
  const titles = first.data.games.edges.map(({ node }) => node.title);
  assert.deepEqual(titles, fixture.newestTitles.slice(0, 3));
  assert.equal(first.data.games.totalCount, fixture.newestTitles.length, "the whole library, not the page");
  assert.deepEqual(
    first.data.games.edges.map(({ node }) => node.category.name),
    titles.map(() => fixture.categoryName),
  );

  assert.equal(log.length, 2, JSON.stringify(log));
  const [miss, retry] = log;
  assert.equal(miss.method, "GET");
  assert.equal(miss.query, null, "the first try carries only the hash");
  assert.match(miss.hash, /^[0-9a-f]{64}$/);
  assert.equal(retry.method, "POST");
  assert.equal(retry.hash, miss.hash);
  assert.equal(sha256(retry.query), retry.hash, "the retry sends the document the hash names");
  assert.equal(retry.status, 200);
  // Neither the miss (an error) nor the POST may be kept by any cache.
  assert.deepEqual([miss.cacheControl, retry.cacheControl], ["no-store", "no-store"]);

  // Another client (a fresh cache, say a second tab) now gets the answer from the hash alone over GET.
  const again = [];
  const second = await apolloClient(again).query({ query: gql(CATALOGUE), variables: { first: 3 } });
  assert.deepEqual(second.data.games.edges.map(({ node }) => node.title), titles);
  assert.deepEqual(again.map(({ method, query, status }) => ({ method, query, status })), [
    { method: "GET", query: null, status: 200 },
  ]);
  assert.equal(again[0].hash, miss.hash);
  // That short GET is what a CDN may serve: the catalogue is the same for everyone (docs/HTTP.md).
  assert.equal(again[0].cacheControl, "public, max-age=300");
  assert.match(again[0].etag, /^"[0-9a-f]{32}(-br|-gzip)?"$/);
});

test("mutations go over POST with their document; the leaderboard subscription sees the new score", async () => {
  const log = [];
  const ws = createClient({
    url: fixture.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${me.token}` },
  });
  sockets.push(ws);
  const client = apolloClient(log, ws);
  const boards = [];
  let subscription;
  let mutation;
  const updated = within(10_000, "a board with the new score", (resolve, reject) => {
    subscription = client.subscribe({ query: gql(BOARD), variables: { game: me.gameId } }).subscribe({
      next: ({ data, error }) => {
        if (error) return reject(error);
        boards.push(data.leaderboardUpdated);
        if (boards.length === 1) {
          mutation = client.mutate({ mutation: gql(SUBMIT_SCORE), variables: { input: scoreInput(me.gameId, 640) } });
          mutation.catch(reject);
        } else if (data.leaderboardUpdated.entries.length > 0) {
          resolve(data.leaderboardUpdated);
        }
      },
      error: reject,
    });
  });
  const board = await updated;
  subscription.unsubscribe();
  // The board may move before the mutation's own answer is back (the event follows the commit).
  const { data: written } = await mutation;
  assert.deepEqual(written.submitScore.score, { __typename: "Score", score: 640, stage: "CHALLENGE" });
  assert.deepEqual(boards[0].entries, [], "the board starts empty");
  assert.equal(boards[0].viewerEntry, null);
  assert.deepEqual(
    board.entries.map(({ rank, score, student }) => ({ rank, score, student: student?.id })),
    [{ rank: 1, score: 640, student: me.studentId }],
  );
  assert.deepEqual({ rank: board.viewerEntry.rank, score: board.viewerEntry.score }, { rank: 1, score: 640 });
  // Only the mutation went over HTTP: its hash-only try and the retry with the document, both POST.
  assert.deepEqual(log.map(({ method }) => method), ["POST", "POST"], JSON.stringify(log));
  assert.equal(log[0].query, null);
  assert.match(log[1].query, /submitScore/);
  assert.equal(log[1].status, 200);
});
