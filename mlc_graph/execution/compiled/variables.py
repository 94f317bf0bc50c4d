"""Variable coercion with the per-operation work done once: graphql-core's values, a fraction of its calls.

graphql-core's `get_variable_values` rebuilds each variable's signature from the AST on every request
(`type_from_ast`, input-type checks) and walks its generic coercion, about 50 calls for W4's one `ID!`
and 120 for W3's four variables. A `VariableCoercer` is built once per operation (kept with the plans):
the signatures resolved, and per variable the coercion that graphql-core's own `coerce_input_value`
would run. Each request then only reads the inputs and coerces each value.

Anything that is not plain success goes to graphql-core, which reports it with its own messages: a
missing non-null variable, a null for a non-null one, a value that does not coerce, an absent variable
with a default (graphql-core applies defaults), and any operation whose signatures do not resolve.
`coerce` returns None for all of those. Equal results to graphql-core's are tested value by value
(tests/execution/test_compiled_variables.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLNonNull,
    GraphQLSchema,
    Undefined,
    VariableDefinitionNode,
    coerce_input_value,
    is_leaf_type,
)

from mlc_graph.execution.compiled.compat import (
    VariableValues,
    VariableValueSource,
    get_variable_signature,
    input_is_nested_too_deeply,
)


class VariableCoercer:
    """The variables of one operation; `coerce` per request."""

    __slots__ = ("_variables", "usable")

    def __init__(self, schema: GraphQLSchema, definitions: Collection[VariableDefinitionNode]) -> None:
        # (name, signature, non-null, leaf type or None, has default)
        self._variables: list[tuple[str, Any, bool, Any, bool]] = []
        self.usable = True
        for node in definitions:
            signature = get_variable_signature(schema, node)
            if isinstance(signature, GraphQLError):
                self.usable = False  # graphql-core reports it, every time
                return
            var_type: Any = signature.type
            non_null = isinstance(var_type, GraphQLNonNull)
            named = var_type.of_type if non_null else var_type
            leaf = named if is_leaf_type(named) else None
            self._variables.append(
                (signature.name, signature, non_null, leaf, node.default_value is not None)
            )

    def coerce(self, inputs: Mapping[str, Any]) -> VariableValues | None:
        """graphql-core's VariableValues for these inputs, or None: let graphql-core coerce (and report)."""
        if not self.usable:
            return None
        sources: dict[str, VariableValueSource] = {}
        coerced: dict[str, Any] = {}
        for name, signature, non_null, leaf, has_default in self._variables:
            value = inputs.get(name, Undefined)
            if value is Undefined:
                if non_null or has_default:
                    return None  # an error, or graphql-core's default handling
                sources[name] = VariableValueSource(signature)
                continue
            sources[name] = VariableValueSource(signature, value)
            if value is None:
                if non_null:
                    return None
                coerced[name] = None
                continue
            if leaf is not None:
                try:
                    result = leaf.coerce_input_value(value)
                except Exception:
                    return None
            else:
                if input_is_nested_too_deeply(value, signature.type):
                    return None
                result = coerce_input_value(value, signature.type)
            if result is Undefined:
                return None
            coerced[name] = result
        return VariableValues(sources, coerced)
