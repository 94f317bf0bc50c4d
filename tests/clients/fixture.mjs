// What the pytest harness (test_js_clients.py) set up for these tests: the server's URLs, tokens and the
// rows it seeded, passed as JSON in CLIENT_FIXTURE. Each test file plays its own game with its own student,
// so files running side by side never see each other's scores on a board.
import { createHash, randomUUID } from "node:crypto";

const raw = process.env.CLIENT_FIXTURE;
if (!raw) {
  throw new Error("CLIENT_FIXTURE is not set: run these through pytest tests/clients/test_js_clients.py");
}

export const fixture = JSON.parse(raw);

/** The player and game set aside for one test file (keys: "apollo", "graphqlWs", "urql", "legacy"). */
export function player(name) {
  const entry = fixture.players[name];
  if (!entry) throw new Error(`no player ${name} in CLIENT_FIXTURE`);
  return entry;
}

export const sha256 = (text) => createHash("sha256").update(text).digest("hex");

export const SUBMIT_SCORE = `
  mutation Submit($input: SubmitScoreInput!) {
    submitScore(input: $input) { score { score stage } bestScore { score } }
  }
`;

export const BOARD = `
  subscription Board($game: ID!) {
    leaderboardUpdated(gameId: $game, scope: CLASS) {
      scope
      entries { rank score student { id } }
      viewerEntry { rank score }
    }
  }
`;

/** The catalogue query under an operation name of the caller's: a document (and APQ hash) of its own. */
export const catalogue = (name) => `
  query ${name}($first: Int!) {
    games(first: $first) { totalCount edges { node { id title category { name } level { position } } } }
  }
`;

export function scoreInput(gameId, score) {
  return { gameId, score, stage: "CHALLENGE", idempotencyKey: randomUUID() };
}

/** Resolves with the first value `next()` yields that satisfies `accept`, failing after `ms`. */
export function within(ms, what, start) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    start((value) => {
      clearTimeout(timer);
      resolve(value);
    }, (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
