"""`python -m bench.cost_bench`: how fast pricing is and how cheaply each limit refuses its attack.

Prints three tables (medians; this machine's figures go in docs/COST.md):
1. the analyzer on the bench workloads W1-W4: first pricing (uncached) and cached pricing;
2. each attack in-process: parse (with the token limit) + the limit pass, i.e. the work a refusal costs;
3. each attack over HTTP against an in-process server on 127.0.0.1 (bounded: a few hundred requests),
   next to a trivial `{ __typename }` for scale, with the SQL statements each refusal ran (always 0).
Needs PostgreSQL only for the server's pool (DATABASE_URL); refusals never use it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestServer
from graphql import GraphQLError, parse

from bench.workloads import WORKLOADS, dashboard_document
from mlc_graph.app import create_app
from mlc_graph.execution.stages import Watch
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.guards.limits import PRESCAN_MIN_CHARS, Limits, check_document, prescan
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import QueryStats
from resolvers.schema import schema

BOMB = (
    "{ games(first: 100) { edges { node { category { games(first: 100) { edges { node { title } } } } } } } }"
)
ATTACKS: dict[str, str] = {
    "QUERY_TOO_DEEP (16 levels)": "{ " + " { ".join(["games", "edges", "node", "category"] * 4) + " }" * 16,
    "TOO_MANY_ALIASES (1,000)": "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }",
    "TOO_MANY_DIRECTIVES (600 on a field)": "{ __typename " + "@skip(if: false) " * 600 + "}",
    "TOO_MANY_REPEATED_FIELDS (2,400)": "{ " + "__typename " * 2400 + "}",
    "TOKEN_LIMIT_EXCEEDED (18,000 tokens)": "{ __typename(" + "a:1 " * 6000 + ") }",
    "QUERY_TOO_COMPLEX (100 x 100 games)": BOMB,
    "DOCUMENT_TOO_LARGE (one 900 KB string)": '{ __typename(a: "' + "x" * 900_000 + '") }',
}
BASELINE = "{ __typename }"


def _median_us(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def analyzer_table(repeat: int) -> None:
    analyzer = CostAnalyzer(schema._schema)
    print("1. Pricing (the analyzer alone)")
    print(f"{'operation':<28} {'cost':>6} {'first pricing':>15} {'cached':>10}")
    documents: list[tuple[str, str, str | None]] = [(w.key, w.document, w.operation_name) for w in WORKLOADS]
    documents.append(("W1 with first: 100", dashboard_document(100), "Dashboard"))
    documents.append(("100 x 100 games (refused)", BOMB, None))
    variables = {"id": "x", "gameId": "x", "categoryId": "x"}
    for key, text, name in documents:
        document = parse(text)
        # Without a cache key nothing is cached: every sample prices the document from scratch.
        uncached = _median_us(partial(analyzer.analyze, document, variables, name), max(1, repeat // 10))
        first = analyzer.analyze(document, variables, name, cache_key=text)
        cached = _median_us(partial(analyzer.analyze, document, variables, name, text), repeat)
        print(f"{key:<28} {first.requested:>6} {uncached:>12.1f} us {cached:>7.2f} us")
    # The after-execution half: actual cost walks the result. A full W1 answer (50 x 10 assignments).
    w1 = next(w for w in WORKLOADS if w.key == "W1")
    analysis = analyzer.analyze(parse(w1.document), variables, w1.operation_name)
    game = {
        "id": "g",
        "title": "t",
        "difficulty": "BEGINNER",
        "thumbnailUrl": None,
        "category": {"id": "c", "name": "n"},
    }
    assignment = {"node": {"id": "a", "status": "ACTIVE", "dueDate": "2026-01-01", "game": game}}
    student = {
        "node": {
            "id": "s",
            "firstName": "f",
            "lastName": "l",
            "avatarUrl": None,
            "assignments": {"edges": [assignment] * 10},
        }
    }
    data = {
        "teacher": {
            "id": "t",
            "firstName": "f",
            "lastName": "l",
            "students": {"totalCount": 50, "edges": [student] * 50},
        }
    }
    walk = _median_us(partial(analysis.actual, data), max(1, repeat // 10))
    label = "W1 actual, full answer"
    print(f"{label:<28} {analysis.actual(data):>6} {walk:>12.1f} us (walks the result after execution)")
    print()


def in_process_table(repeat: int) -> None:
    settings = Settings()
    limits_ = Limits.from_settings(settings)
    analyzer = CostAnalyzer(schema._schema)
    print("2. Refusal work in process, as the server does it for a text it has not seen: token prescan,")
    print("   then parse (token limit), limit pass, pricing")
    print(f"{'attack':<40} {'bytes':>7} {'median':>10} {'code':<28}")
    for name, text in ATTACKS.items():

        def refuse(text: str = text) -> str:
            if len(text) > settings.max_document_chars:
                return "DOCUMENT_TOO_LARGE"
            if len(text) >= PRESCAN_MIN_CHARS:
                early = prescan(text, limits_, settings.max_tokens)
                if early is not None:
                    return str((early.extensions or {})["code"])
            try:
                document = parse(text, max_tokens=settings.max_tokens)
            except GraphQLError:
                return "TOKEN_LIMIT_EXCEEDED"
            errors = check_document(document, limits_)
            if errors:
                return str((errors[0].extensions or {})["code"])
            try:
                analyzer.analyze(document).check(settings.cost_budget)
            except GraphQLError as error:
                return str((error.extensions or {})["code"])
            return "(accepted)"

        code = refuse()
        median = _median_us(refuse, max(3, repeat // 100))
        print(f"{name:<40} {len(text):>7} {median / 1000:>7.2f} ms {code:<28}")
    print()


async def http_table(database_url: str, rounds: int) -> None:
    seen: list[QueryStats] = []

    settings = Settings(database_url=database_url, pool=PoolSettings(min_size=1, max_size=2))
    app = create_app(settings, first_stages=[Watch(lambda request: seen.append(request.context.stats))])
    token = issue_token(settings.jwt_secret, Role.TEACHER, 1, 1, ttl_seconds=600)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/graphql-response+json",
        "Content-Type": "application/json",
    }
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("/graphql"))
        print(
            f"3. Over HTTP to 127.0.0.1, {rounds} requests each: a new text every time (a comment appended,"
        )
        print("   so nothing is cached) and the same text again (the refusal is cached with the document)")
        print(f"{'request':<40} {'status':>6} {'new text':>10} {'repeated':>10} {'SQL':>4}  code")
        for name, text in {"{ __typename } (baseline)": BASELINE, **ATTACKS}.items():
            medians = []
            status, code, statements = 0, "", 0
            for fresh in (True, False):
                samples = []
                for i in range(rounds):
                    seen.clear()
                    body = orjson.dumps({"query": f"{text}\n# {i}" if fresh else text})
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = orjson.loads(await response.read())
                    samples.append(time.perf_counter() - started)
                    status = response.status
                    statements += sum(stats.statements for stats in seen)
                    code = (payload.get("errors") or [{}])[0].get("extensions", {}).get("code", "")
                medians.append(statistics.median(samples) * 1000)
            print(
                f"{name:<40} {status:>6} {medians[0]:>7.2f} ms {medians[1]:>7.2f} ms {statements:>4}  {code}"
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=2000, help="samples for in-process medians")
    parser.add_argument("--rounds", type=int, default=20, help="HTTP requests per attack")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP table (no database needed)")
    args = parser.parse_args()
    analyzer_table(args.repeat)
    in_process_table(args.repeat)
    if not args.no_http:
        database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        asyncio.run(http_table(database_url, args.rounds))


if __name__ == "__main__":
    main()
