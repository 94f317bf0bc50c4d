"""Locust: a school-hours mix against MLC Graph, in the spec's stages; run by `mlc-graph loadtest`.

Students (nine in ten users) open their dashboard, browse the game library, play and submit scores, and
look at their class leaderboard, with 1-3 s between actions. Teachers open their class list, the class
progress report and a leaderboard, with 2-5 s between actions. Request names are `<category>: <operation>`
so the SLOs can be judged per category (read, write, report, leaderboard) when the test stops; the
merged timings are written to MLC_LOADTEST_RESULT for `mlc-graph loadtest` to judge.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from typing import Any

import orjson
from locust import FastHttpUser, LoadTestShape, between, events, task

from mlc_graph.tools.loadtest import stages, users_at

PLAN: dict[str, Any] = orjson.loads(open(os.environ["MLC_LOADTEST_PLAN"], "rb").read())  # noqa: SIM115
SCHEDULE = stages(
    float(os.environ.get("MLC_LOADTEST_SCALE", "1")), int(os.environ.get("MLC_LOADTEST_PEAK", "200"))
)
_students = itertools.cycle(PLAN["students"])
_teachers = itertools.cycle(PLAN["teachers"] or [{"id": "", "token": ""}])
_counts = {"server_errors": 0}

STUDENT_DASHBOARD = """
query StudentDashboard($gameId: ID!) { viewer { student { id displayName avatarUrl
  assignments(first: 10, status: ACTIVE) {
    totalCount edges { node { id dueDate game { id title thumbnailUrl } } } }
  scores(first: 10) { edges { node { id score stage createdAt game { title } } } }
  badges { badge { name iconUrl } awardedAt }
  bestScore(gameId: $gameId) { score achievedAt } } } }
"""
GAME_LIBRARY = """
query GameLibrary($categoryId: ID, $after: String) {
  games(first: 20, after: $after, filter: {categoryId: $categoryId}) {
    edges { cursor node { id title difficulty thumbnailUrl category { name } level { name } } }
    pageInfo { hasNextPage endCursor } } }
"""
SUBMIT_SCORE = """
mutation SubmitScore($input: SubmitScoreInput!) {
  submitScore(input: $input) { score { id score } bestScore { score } rank } }
"""
LEADERBOARD = """
query Leaderboard($gameId: ID!, $scope: LeaderboardScope!) {
  leaderboard(gameId: $gameId, scope: $scope, first: 10) {
    entries { rank score displayName } viewerEntry { rank score } } }
"""
CLASS_LIST = """
query ClassList($id: ID!) { teacher(id: $id) { displayName students(first: 20) { totalCount
  edges { node { id displayName lastActiveAt assignments(first: 5) { totalCount } } } } } }
"""
CLASS_PROGRESS = """
query ClassProgress($id: ID!) { classProgress(teacherId: $id) { students {
  student { id displayName } assignmentsTotal assignmentsCompleted averageScore lastActiveAt } } }
"""


class _GraphQLUser(FastHttpUser):
    abstract = True
    token = ""

    def graphql(self, category: str, operation: str, query: str, variables: dict[str, Any]) -> Any:
        body = {"query": query, "variables": variables, "operationName": operation}
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        with self.client.post(
            "/graphql", data=orjson.dumps(body).decode(), headers=headers, name=f"{category}: {operation}",
            catch_response=True,
        ) as response:  # fmt: skip
            status = response.status_code or 0
            if status >= 500:
                _counts["server_errors"] += 1
            try:
                payload = orjson.loads(response.content or b"{}")
            except orjson.JSONDecodeError:
                response.failure(f"HTTP {status}: not JSON")
                return None
            errors = payload.get("errors")
            if status != 200 or errors:
                code = errors[0].get("extensions", {}).get("code") if errors else None
                response.failure(f"HTTP {status} {code or ''}".strip())
                return None
            response.success()
            return payload.get("data")


class Student(_GraphQLUser):
    weight = 9
    wait_time = between(1, 3)

    def on_start(self) -> None:
        me = next(_students)
        self.token = me["token"]
        self.game = random.choice(PLAN["games"])

    @task(4)
    def dashboard(self) -> None:
        self.graphql("read", "StudentDashboard", STUDENT_DASHBOARD, {"gameId": self.game["id"]})

    @task(3)
    def library(self) -> None:
        game = random.choice(PLAN["games"])
        data = self.graphql("read", "GameLibrary", GAME_LIBRARY, {"categoryId": game["category"]})
        page = data["games"]["pageInfo"] if data else None
        if page and page["hasNextPage"] and random.random() < 0.5:
            variables = {"categoryId": game["category"], "after": page["endCursor"]}
            self.graphql("read", "GameLibrary", GAME_LIBRARY, variables)

    @task(2)
    def play(self) -> None:
        self.game = random.choice(PLAN["games"])
        variables = {
            "input": {
                "gameId": self.game["id"],
                "score": random.randint(self.game["min"], self.game["max"]),
                "stage": "CHALLENGE" if random.random() < 0.6 else "PRACTICE",
                "idempotencyKey": str(uuid.uuid4()),
            }
        }
        self.graphql("write", "SubmitScore", SUBMIT_SCORE, variables)

    @task(2)
    def leaderboard(self) -> None:
        variables = {"gameId": self.game["id"], "scope": random.choice(("CLASS", "CLASS", "ORGANIZATION"))}
        self.graphql("leaderboard", "Leaderboard", LEADERBOARD, variables)


class Teacher(_GraphQLUser):
    weight = 1
    wait_time = between(2, 5)

    def on_start(self) -> None:
        me = next(_teachers)
        self.token = me["token"]
        self.teacher_id = me["id"]

    @task(3)
    def class_list(self) -> None:
        self.graphql("read", "ClassList", CLASS_LIST, {"id": self.teacher_id})

    @task(2)
    def class_progress(self) -> None:
        self.graphql("report", "ClassProgress", CLASS_PROGRESS, {"id": self.teacher_id})

    @task(1)
    def leaderboard(self) -> None:
        game = random.choice(PLAN["games"])
        self.graphql("leaderboard", "Leaderboard", LEADERBOARD, {"gameId": game["id"], "scope": "CLASS"})


class SchoolDay(LoadTestShape):
    """Ramp to half the peak, hold, ramp to the peak, hold, ramp down (durations scaled)."""

    def tick(self) -> tuple[int, float] | None:
        users = users_at(SCHEDULE, self.get_run_time())  # type: ignore[no-untyped-call]
        if users is None:
            return None
        return users, max(1.0, SCHEDULE[-1][1] or users / 2.0)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _write_result(environment: Any, **_kwargs: Any) -> None:
    """Merge Locust's per-request timings by category for the SLO check."""
    categories: dict[str, dict[str, Any]] = {}
    requests = failures = 0
    for entry in environment.stats.entries.values():
        category = entry.name.split(":", 1)[0]
        merged = categories.setdefault(category, {"histogram": {}, "count": 0, "failures": 0})
        for millis, count in entry.response_times.items():
            merged["histogram"][millis] = merged["histogram"].get(millis, 0) + count
        merged["count"] += entry.num_requests
        merged["failures"] += entry.num_failures
        requests += entry.num_requests
        failures += entry.num_failures
    total = environment.stats.total
    elapsed = max(1e-9, (total.last_request_timestamp or 0) - (total.start_time or 0))
    result = {
        "categories": {name: {**c, "histogram": {str(k): v for k, v in c["histogram"].items()}}
                       for name, c in categories.items()},
        "requests": requests,
        "failures": failures,
        "server_errors": _counts["server_errors"],
        "rps": requests / elapsed,
    }  # fmt: skip
    with open(os.environ["MLC_LOADTEST_RESULT"], "wb") as out:
        out.write(orjson.dumps(result))
