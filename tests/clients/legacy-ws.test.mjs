// subscriptions-transport-ws, the client of the legacy `graphql-ws` subprotocol (Apollo's old WebSocket
// link; Apollo Kotlin 3 and older Apollo iOS speak the same protocol): the board and its update.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";

import { BOARD, SUBMIT_SCORE, fixture, player, scoreInput, within } from "./fixture.mjs";

const me = player("legacy");

test("the legacy protocol's client gets the board, then the update after a submitScore", async () => {
  const client = new SubscriptionClient(
    fixture.wsUrl,
    { connectionParams: { authorization: `Bearer ${me.token}` }, reconnect: false },
    WebSocket,
  );
  const boards = [];
  let subscription;
  try {
    const updated = await within(10_000, "the board with the new score", (resolve, reject) => {
      subscription = client.request({ query: BOARD, variables: { game: me.gameId } }).subscribe({
        next: (result) => {
          if (result.errors) return reject(new Error(JSON.stringify(result.errors)));
          boards.push(result.data.leaderboardUpdated);
          if (boards.length === 1) {
            fetch(fixture.httpUrl, {
              method: "POST",
              headers: { "content-type": "application/json", authorization: `Bearer ${me.token}` },
              body: JSON.stringify({ query: SUBMIT_SCORE, variables: { input: scoreInput(me.gameId, 555) } }),
            }).catch(reject);
          } else if (result.data.leaderboardUpdated.entries.length > 0) {
            resolve(result.data.leaderboardUpdated);
          }
        },
        error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
      });
    });
    assert.equal(client.wsImpl, WebSocket);
    assert.equal(client.client.protocol, "graphql-ws", "the server answered in the legacy subprotocol");
    assert.deepEqual(boards[0], { scope: "CLASS", entries: [], viewerEntry: null });
    assert.deepEqual(updated.entries, [{ rank: 1, score: 555, student: { id: me.studentId } }]);
    assert.deepEqual(updated.viewerEntry, { rank: 1, score: 555 });
  } finally {
    subscription?.unsubscribe();
    client.close();
  }
});

test("a bad token is refused with the protocol's connection_error", async () => {
  let client;
  try {
    const refusal = await within(10_000, "the refusal", (resolve) => {
      client = new SubscriptionClient(
        fixture.wsUrl,
        { connectionParams: { token: "not-a-token" }, reconnect: false, connectionCallback: resolve },
        WebSocket,
      );
    });
    assert.match(refusal.message, /invalid token/);
  } finally {
    client?.close();
  }
});
