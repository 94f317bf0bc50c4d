"""Leaf serializers: graphql-core's coerce_output_value with the common cases short-circuited.

Every serializer returns exactly what graphql-core's complete_leaf_value would, or raises where it
would raise (the compiled run then bails to graphql-core, which produces the error).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from math import inf
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLString,
)
from graphql.pyutils import Undefined

from mlc_graph.execution.compiled.compat import complete_leaf_value

_MAX_REMEMBERED = 4096
# Times are many more than enum names: each line of a board has its own achieved_at, and 4,096 texts were
# cleared and rebuilt over and over under a leaderboard load (py-spy: 6 % of W2's samples in the date
# serializer). 32,768 texts of ~250 bytes with their keys stay under ~8 MB per DateTime/Date type.
_MAX_TIMES_REMEMBERED = 32_768
_MIN_INT = -(2**31)
_MAX_INT = 2**31 - 1


def passthrough(type_: GraphQLLeafType) -> str:
    """The Python type whose exact instances a builtin scalar returns unchanged ("" for other leaves)."""
    if type_ is GraphQLString or type_ is GraphQLID:
        return "str"
    if type_ is GraphQLInt:
        return "int"
    if type_ is GraphQLBoolean:
        return "bool"
    if type_ is GraphQLFloat:
        return "float"
    return ""


def leaf_serializer(type_: GraphQLLeafType) -> Callable[[Any], Any]:
    complete = complete_leaf_value

    def slow(value: Any) -> Any:
        return complete(type_, value)

    if type_ is GraphQLString or type_ is GraphQLID:
        return lambda value: value if type(value) is str else slow(value)
    if type_ is GraphQLInt:
        return lambda value: value if type(value) is int and _MIN_INT <= value <= _MAX_INT else slow(value)
    if type_ is GraphQLBoolean:
        return lambda value: value if type(value) is bool else slow(value)
    if type_ is GraphQLFloat:
        return lambda value: value if type(value) is float and -inf < value < inf else slow(value)
    if isinstance(type_, GraphQLEnumType):
        # Enum names depend only on the value: remember them (database strings and enum members alike).
        names: dict[Any, Any] = {}

        def enum_name(value: Any) -> Any:
            if not isinstance(value, str):  # str and StrEnum members hash and compare alike
                return slow(value)
            name = names.get(value)
            if name is None:
                if len(names) >= _MAX_REMEMBERED:
                    names.clear()  # an enum type has few values; a flood of bad ones must not grow this
                name = names[value] = slow(value)
            return name

        return enum_name
    coerce = type_.coerce_output_value  # custom scalars (Strawberry's Date, DateTime: isoformat)
    # Dates and times recur (due dates of a class, the same leaderboard read again and again): remember
    # their text, bounded. Equal aware datetimes in different zones print differently: the offset is part
    # of the key.
    texts: dict[tuple[Any, Any], Any] = {}

    def custom(value: Any) -> Any:
        kind = type(value)
        if kind is date or kind is datetime:
            key = (value, value.utcoffset() if kind is datetime else None)
            text = texts.get(key)
            if text is None:
                if len(texts) >= _MAX_TIMES_REMEMBERED:
                    texts.clear()
                text = texts[key] = custom_uncached(value)
            return text
        return custom_uncached(value)

    def custom_uncached(value: Any) -> Any:
        result = coerce(value)
        if result is None or result is Undefined:
            return slow(value)  # raises graphql-core's error
        return result

    return custom
