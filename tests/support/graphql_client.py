"""Run GraphQL documents against the real schema and database without HTTP, counting SQL."""

from __future__ import annotations

from typing import Any

import asyncpg
from graphql import ExecutionResult, execute, get_operation_ast, parse

from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from resolvers.batch import BATCH_RESOLVERS
from resolvers.context import make_context
from resolvers.relay import encode_global_id
from resolvers.schema import schema


def principal(role: str, user_id: int, org_id: int, sid: str = "s1") -> Principal:
    return Principal(Role(role.upper()), user_id, org_id, sid)


_COMPILED = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)


async def run(
    pool: asyncpg.Pool,
    query: str,
    variables: dict[str, Any] | None = None,
    viewer: Principal | None = None,
    executor: str = "compiled",
    settings: Settings | None = None,
) -> tuple[ExecutionResult, QueryStats]:
    """Execute as the server does: the compiled executor by default, graphql-core on request.

    tests/test_compiled_differential.py proves both give byte-identical responses.
    """
    stats = QueryStats(keep_texts=True)
    context = make_context(settings or Settings(), Executor(pool, stats), viewer)
    document = parse(query)
    operation = get_operation_ast(document)
    if executor == "compiled" and operation is not None:
        return await _COMPILED.execute(document, operation, context, variables, None), stats
    result = execute(schema._schema, document, context_value=context, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    return result, stats


def gid(type_name: str, pk: int) -> str:
    return encode_global_id(type_name, pk)
