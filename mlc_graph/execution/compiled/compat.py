"""Every use the compiled executor makes of a library's internals, in one place.

Tested with strawberry-graphql 0.341.2 and graphql-core 3.3.2 (pyproject's ranges are the ones the tests
ran; tests/execution/test_compat.py checks each name below resolves on the installed versions). When a
release moves one of these, this module is the one to change; the differential and hypothesis tests
then prove the compiled answers still equal graphql-core's byte for byte.

    strawberry   Schema._strawberry_schema    the Strawberry schema behind a graphql-core schema
                 converter._exception_handler_specs   field exception handlers (then: not compiled)
                 resolver.wrapped_func        the resolver function under Strawberry's wrapper
                 __strawberry_directive__     a schema directive's GraphQL name (execution.cache_policy)
                 GraphQLCoreConverter, convert_arguments, StrawberryField, StrawberryMaybe/Optional
    graphql-core graphql.execution.values     VariableValues, VariableValueSource, get_variable_values,
                                              input_is_nested_too_deeply, get_argument_values
                 graphql.execution.get_variable_signature   get_variable_signature
                 graphql.execution.executor   Executor.complete_leaf_value (leaf serialization)
                 GraphQLResolveInfo           its 14 positional fields, built by keyword below
    asyncio      Future._asyncio_future_blocking   how a Task knows a yielded future is an asyncio one
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo
from graphql.execution.executor import Executor as _GraphQLCoreExecutor
from graphql.execution.get_variable_signature import get_variable_signature
from graphql.execution.values import (
    VariableValues,
    VariableValueSource,
    get_argument_values,
    get_variable_values,
    input_is_nested_too_deeply,
)
from graphql.pyutils import is_awaitable
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.field import StrawberryField

TESTED_WITH = {"strawberry-graphql": "0.341.2", "graphql-core": "3.3.2"}
DEFINITION_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
complete_leaf_value = _GraphQLCoreExecutor.complete_leaf_value


def strawberry_schema_of(schema: Any) -> Any | None:
    """The Strawberry schema a graphql-core schema was built from, or None for any other schema."""
    return getattr(schema, "_strawberry_schema", None)


def has_field_exception_handlers(converter: Any) -> bool:
    return bool(getattr(converter, "_exception_handler_specs", None))


def schema_directive_name(directive: Any) -> str | None:
    """The GraphQL name of a Strawberry schema directive instance (e.g. "cacheControl"), or None."""
    meta = getattr(type(directive), "__strawberry_directive__", None)
    return None if meta is None else str(meta.graphql_name)


def resolver_function(resolver: Any) -> Callable[..., Any]:
    """The function a StrawberryResolver wraps."""
    func: Callable[..., Any] = resolver.wrapped_func
    return func


def resolve_info(
    *,
    field_name: str,
    field_nodes: Any,
    return_type: Any,
    parent_type: Any,
    schema: Any,
    fragments: Any,
    operation: Any,
    variable_values: Any,
    context: Any,
) -> GraphQLResolveInfo[Any]:
    """A GraphQLResolveInfo for a type resolver (no path, no root value: type resolvers read neither)."""
    return GraphQLResolveInfo(
        field_name,
        field_nodes,
        return_type,
        parent_type,
        None,  # type: ignore[arg-type]  # path: not read by type resolvers
        schema,
        fragments,
        None,
        operation,
        variable_values,
        context,
        is_awaitable,
        None,
        None,  # type: ignore[arg-type]
    )


# What a Task reads and sets on a future a coroutine yields (None on anything that is not an asyncio
# future). A name, not a function: the runtime's coroutine driver reads it once per suspension, where a
# wrapper call would cost two calls per await of every resolver.
FUTURE_BLOCKING = "_asyncio_future_blocking"


__all__ = [
    "DEFINITION_BACKREF",
    "FUTURE_BLOCKING",
    "TESTED_WITH",
    "StrawberryField",
    "StrawberryMaybe",
    "StrawberryOptional",
    "VariableValueSource",
    "VariableValues",
    "complete_leaf_value",
    "convert_arguments",
    "get_argument_values",
    "get_variable_signature",
    "get_variable_values",
    "has_field_exception_handlers",
    "input_is_nested_too_deeply",
    "resolve_info",
    "resolver_function",
    "schema_directive_name",
    "strawberry_schema_of",
]
