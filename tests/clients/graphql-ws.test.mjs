// graphql-ws's own client (the graphql-transport-ws protocol): the live leaderboard after a submitScore,
// and the protocol's refusal of a bad token.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { BOARD, SUBMIT_SCORE, fixture, player, scoreInput, within } from "./fixture.mjs";

const me = player("graphqlWs");

async function post(query, variables, token) {
  const response = await fetch(fixture.httpUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

test("the board arrives on subscribe and again after each submitScore, in rank order", async () => {
  const client = createClient({
    url: fixture.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${me.token}` },
  });
  const boards = [];
  try {
    const iterator = client.iterate({ query: BOARD, variables: { game: me.gameId } });
    const next = async () => {
      const { value, done } = await iterator.next();
      assert.equal(done, false);
      assert.equal(value.errors, undefined, JSON.stringify(value.errors));
      boards.push(value.data.leaderboardUpdated);
      return value.data.leaderboardUpdated;
    };
    const initial = await next();
    assert.deepEqual(initial, { scope: "CLASS", entries: [], viewerEntry: null });

    const written = await post(SUBMIT_SCORE, { input: scoreInput(me.gameId, 410) }, me.token);
    assert.deepEqual(written.data.submitScore.score, { score: 410, stage: "CHALLENGE" });
    const afterFirst = await within(10_000, "the first update", (resolve, reject) => next().then(resolve, reject));
    assert.deepEqual(afterFirst.entries, [{ rank: 1, score: 410, student: { id: me.studentId } }]);
    assert.deepEqual(afterFirst.viewerEntry, { rank: 1, score: 410 });

    // A classmate beats it (their teacher submits on their behalf): the viewer drops to second.
    const rival = fixture.players.graphqlWs.rival;
    await post(SUBMIT_SCORE, { input: { ...scoreInput(me.gameId, 900), studentId: rival.studentId } }, fixture.teacherToken);
    const afterRival = await within(10_000, "the rival's update", (resolve, reject) => next().then(resolve, reject));
    assert.deepEqual(
      afterRival.entries.map(({ rank, score }) => [rank, score]),
      [[1, 900], [2, 410]],
    );
    assert.equal(afterRival.entries[0].student, null, "a student never sees a classmate's record");
    assert.deepEqual(afterRival.viewerEntry, { rank: 2, score: 410 });
    await iterator.return();
  } finally {
    await client.dispose();
  }
});

test("a bad token in connectionParams closes the socket with 4403", async () => {
  const closed = within(10_000, "the close event", (resolve) => {
    const client = createClient({
      url: fixture.wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: "Bearer not-a-token" },
      retryAttempts: 0,
      on: { closed: (event) => resolve({ code: event.code, client }) },
    });
    client.subscribe({ query: BOARD, variables: { game: me.gameId } }, { next() {}, error() {}, complete() {} });
  });
  const { code, client } = await closed;
  await client.dispose();
  assert.equal(code, 4403);
});
