"""Run GraphQL documents against the real schema and database without HTTP, counting SQL."""

from __future__ import annotations

from typing import Any

import asyncpg
from graphql import ExecutionResult, execute, parse

from mlc_graph.auth import Principal, Role
from mlc_graph.config import Settings
from mlc_graph.context import make_context
from mlc_graph.db import Executor, QueryStats
from resolvers.relay import encode_global_id
from resolvers.schema import schema


def principal(role: str, user_id: int, org_id: int, sid: str = "s1") -> Principal:
    return Principal(Role(role.upper()), user_id, org_id, sid)


async def run(
    pool: asyncpg.Pool,
    query: str,
    variables: dict[str, Any] | None = None,
    viewer: Principal | None = None,
) -> tuple[ExecutionResult, QueryStats]:
    stats = QueryStats(keep_texts=True)
    context = make_context(Settings(), Executor(pool, stats), viewer)
    result = execute(schema._schema, parse(query), context_value=context, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    return result, stats


def gid(type_name: str, pk: int) -> str:
    return encode_global_id(type_name, pk)
