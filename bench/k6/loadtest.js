// The spec's load test for k6: the school-hours mix of bench/locustfile.py over the product's GraphQL
// screens, in the spec's stages, judged by the spec's thresholds and the per-category SLOs.
//
//   .venv/bin/mlc-graph loadtest --runner k6      (plan, server, this script, verdict: one command)
//
// Run by hand: MLC_LOADTEST_PLAN=plan.json (ids and per-user tokens from `mlc-graph loadtest`, users of
// several organizations), MLC_LOADTEST_HOST=http://127.0.0.1:8000, optional MLC_LOADTEST_SCALE (stage
// durations, CI smoke: 0.01), MLC_LOADTEST_PEAK (200) and MLC_LOADTEST_SUMMARY (where the JSON summary goes).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate } from 'k6/metrics';

const HOST = __ENV.MLC_LOADTEST_HOST || 'http://127.0.0.1:8000';
const SCALE = Number(__ENV.MLC_LOADTEST_SCALE || '1');
const PEAK = Number(__ENV.MLC_LOADTEST_PEAK || '200');
const PLAN = JSON.parse(open(__ENV.MLC_LOADTEST_PLAN));
const STUDENTS = new SharedArray('students', () => PLAN.students);
const TEACHERS = new SharedArray('teachers', () => PLAN.teachers);
const GAMES = new SharedArray('games', () => PLAN.games);

// The spec's stages: 2 min to half the peak, 5 min there, 2 min to the peak, 5 min there, 2 min down.
const FULL_STAGES = [[120, 0.5], [300, 0.5], [120, 1], [300, 1], [120, 0]];

function stagesFor(share) {
  return FULL_STAGES.map(([seconds, level]) => ({
    duration: `${Math.max(1, Math.round(seconds * SCALE))}s`,
    target: level === 0 ? 0 : Math.max(1, Math.round(PEAK * level * share)),
  }));
}

// Per-category SLOs (docs/OPERATIONS.md): a tagged threshold each, plus "it ran at all" (count>0), since
// an empty category would pass its latency threshold without measuring anything.
const SLO_MS = { read: 500, write: 1000, report: 3000, leaderboard: 300 };
const graphqlErrors = new Rate('graphql_errors');
const serverErrors = new Rate('server_errors');
const requestsByCategory = new Counter('graphql_requests');

const thresholds = {
  http_req_duration: ['p(95)<500'],
  http_req_failed: ['rate<0.01'],
  graphql_errors: ['rate<0.01'],
  server_errors: ['rate<0.001'],
};
for (const [category, ms] of Object.entries(SLO_MS)) {
  thresholds[`http_req_duration{category:${category}}`] = [`p(95)<${ms}`];
  thresholds[`graphql_requests{category:${category}}`] = ['count>0'];
}

export const options = {
  scenarios: {
    // Nine students to one teacher, as in the Locust plan.
    students: { executor: 'ramping-vus', exec: 'student', startVUs: 0, stages: stagesFor(0.9), gracefulRampDown: '10s' },
    teachers: { executor: 'ramping-vus', exec: 'teacher', startVUs: 0, stages: stagesFor(0.1), gracefulRampDown: '10s' },
  },
  thresholds,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

const STUDENT_DASHBOARD = `
query StudentDashboard($gameId: ID!) { viewer { student { id displayName avatarUrl
  assignments(first: 10, status: ACTIVE) {
    totalCount edges { node { id dueDate game { id title thumbnailUrl } } } }
  scores(first: 10) { edges { node { id score stage createdAt game { title } } } }
  badges { badge { name iconUrl } awardedAt }
  bestScore(gameId: $gameId) { score achievedAt } } } }`;
const GAME_LIBRARY = `
query GameLibrary($categoryId: ID, $after: String) {
  games(first: 20, after: $after, filter: {categoryId: $categoryId}) {
    edges { cursor node { id title difficulty thumbnailUrl category { name } level { name } } }
    pageInfo { hasNextPage endCursor } } }`;
const SUBMIT_SCORE = `
mutation SubmitScore($input: SubmitScoreInput!) {
  submitScore(input: $input) { score { id score } bestScore { score } rank } }`;
const LEADERBOARD = `
query Leaderboard($gameId: ID!, $scope: LeaderboardScope!) {
  leaderboard(gameId: $gameId, scope: $scope, first: 10) {
    entries { rank score displayName } viewerEntry { rank score } } }`;
const CLASS_LIST = `
query ClassList($id: ID!) { teacher(id: $id) { displayName students(first: 20) { totalCount
  edges { node { id displayName lastActiveAt assignments(first: 5) { totalCount } } } } } }`;
const CLASS_PROGRESS = `
query ClassProgress($id: ID!) { classProgress(teacherId: $id) { students {
  student { id displayName } assignmentsTotal assignmentsCompleted averageScore lastActiveAt } } }`;

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function between(low, high) {
  return low + Math.random() * (high - low);
}

function uuid4() {
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = Math.floor(Math.random() * 16);
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

function graphql(token, category, operation, query, variables) {
  const tags = { category, operation, name: `${category}: ${operation}` };
  const response = http.post(`${HOST}/graphql`, JSON.stringify({ query, variables, operationName: operation }), {
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    tags,
  });
  requestsByCategory.add(1, { category });
  serverErrors.add(response.status >= 500, { category });
  let body = null;
  try {
    body = response.json();
  } catch (_) {
    body = null;
  }
  const ok = response.status === 200 && body !== null && !body.errors;
  graphqlErrors.add(!ok, { category });
  check(response, { [`${category}: ${operation} answered`]: () => ok });
  return ok ? body.data : null;
}

// Each virtual user is one user of the plan, by its number: a token of its own, in its organization.
function me(list) {
  return list[(__VU - 1) % list.length];
}

let studentGame = null;

export function student() {
  const { token } = me(STUDENTS);
  if (studentGame === null) studentGame = pick(GAMES);
  const roll = Math.random() * 11; // weights 4 dashboard, 3 library, 2 play, 2 leaderboard
  if (roll < 4) {
    graphql(token, 'read', 'StudentDashboard', STUDENT_DASHBOARD, { gameId: studentGame.id });
  } else if (roll < 7) {
    const game = pick(GAMES);
    const data = graphql(token, 'read', 'GameLibrary', GAME_LIBRARY, { categoryId: game.category });
    const page = data ? data.games.pageInfo : null;
    if (page && page.hasNextPage && Math.random() < 0.5) {
      graphql(token, 'read', 'GameLibrary', GAME_LIBRARY, { categoryId: game.category, after: page.endCursor });
    }
  } else if (roll < 9) {
    studentGame = pick(GAMES);
    graphql(token, 'write', 'SubmitScore', SUBMIT_SCORE, {
      input: {
        gameId: studentGame.id,
        score: Math.floor(between(studentGame.min, studentGame.max + 1)),
        stage: Math.random() < 0.6 ? 'CHALLENGE' : 'PRACTICE',
        idempotencyKey: uuid4(),
      },
    });
  } else {
    const scope = pick(['CLASS', 'CLASS', 'ORGANIZATION']);
    graphql(token, 'leaderboard', 'Leaderboard', LEADERBOARD, { gameId: studentGame.id, scope });
  }
  sleep(between(1, 3));
}

export function teacher() {
  const { token, id } = me(TEACHERS);
  const roll = Math.random() * 6; // weights 3 class list, 2 class progress, 1 leaderboard
  if (roll < 3) {
    graphql(token, 'read', 'ClassList', CLASS_LIST, { id });
  } else if (roll < 5) {
    graphql(token, 'report', 'ClassProgress', CLASS_PROGRESS, { id });
  } else {
    graphql(token, 'leaderboard', 'Leaderboard', LEADERBOARD, { gameId: pick(GAMES).id, scope: 'CLASS' });
  }
  sleep(between(2, 5));
}

// The verdict, per threshold, for people (stdout) and for `mlc-graph loadtest` (the JSON file).
export function handleSummary(data) {
  const lines = ['k6 thresholds (the spec and the per-category SLOs):'];
  for (const [name, metric] of Object.entries(data.metrics)) {
    for (const [expression, result] of Object.entries(metric.thresholds || {})) {
      lines.push(`  ${result.ok ? 'pass' : 'FAIL'}  ${name}: ${expression}`);
    }
  }
  const out = { stdout: `${lines.join('\n')}\n` };
  if (__ENV.MLC_LOADTEST_SUMMARY) out[__ENV.MLC_LOADTEST_SUMMARY] = JSON.stringify(data, null, 1);
  return out;
}
