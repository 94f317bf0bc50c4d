"""The compiled executor's variable coercion (execution/compiled/variables.py) gives graphql-core's values
for every input it takes on, and hands everything else (errors, defaults) back to graphql-core."""

from __future__ import annotations

from typing import Any

from graphql import OperationDefinitionNode, build_schema, parse
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc_graph.execution.compiled.compat import VariableValues, get_variable_values
from mlc_graph.execution.compiled.variables import VariableCoercer

SCHEMA = build_schema(
    """
    enum Color { RED GREEN }
    scalar Stamp
    input Filter { category: ID, level: Int!, tag: String = "any", colors: [Color!] }
    type Query {
      f(id: ID, s: String, i: Int, x: Float, b: Boolean, c: Color, t: Stamp, f: Filter, l: [Int!]): String
    }
    """
)
OPERATION = parse(
    """
    query Q($id: ID!, $s: String, $i: Int!, $x: Float, $b: Boolean, $c: Color!, $t: Stamp,
            $f: Filter, $l: [Int!], $d: Int = 7) {
      f(id: $id, s: $s, i: $i, x: $x, b: $b, c: $c, t: $t, f: $f, l: $l)
      g: f(i: $d)
    }
    """
).definitions[0]
assert isinstance(OPERATION, OperationDefinitionNode)
DEFINITIONS = OPERATION.variable_definitions or ()
NAMES = ["id", "s", "i", "x", "b", "c", "t", "f", "l", "d"]
COERCER = VariableCoercer(SCHEMA, DEFINITIONS)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**33), max_value=2**33)
    | st.floats(allow_nan=True)
    | st.text(max_size=4)
    | st.sampled_from(["RED", "GREEN", "BLUE", "12", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["category", "level", "tag", "colors", "zz"]), inner, max_size=4)
    ),
    max_leaves=8,
)


VALID = {"id": "U3R1ZGVudDox", "i": 3, "c": "RED", "d": 1}
TAKEN: list[bool] = []  # per generated example: did the fast path answer?


def reference(inputs: dict[str, Any]) -> VariableValues | list[Any]:
    return get_variable_values(SCHEMA, DEFINITIONS, dict(inputs), 50)


def same(ours: VariableValues, theirs: VariableValues) -> None:
    assert ours.coerced == theirs.coerced
    assert repr(ours.coerced) == repr(theirs.coerced)  # the same types too (1 is not 1.0, not True)
    assert ours.sources.keys() == theirs.sources.keys()
    for name, source in ours.sources.items():
        other = theirs.sources[name]
        assert source.signature.name == other.signature.name
        assert str(source.signature.type) == str(other.signature.type)  # wrappers are built per call
        assert source.value is other.value or source.value == other.value


# Values each variable's type takes (and some it does not), drawn more often than arbitrary JSON.
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
typed = {
    "id": st.text(max_size=6) | int32,
    "s": st.text(max_size=6),
    "i": int32,
    "x": st.floats(allow_nan=False, allow_infinity=False) | int32,
    "b": st.booleans(),
    "c": st.sampled_from(["RED", "GREEN"]),
    "t": json_values,
    "f": st.fixed_dictionaries(
        {"level": int32}, optional={"category": st.text(max_size=3) | int32, "tag": st.text(max_size=3),
                                    "colors": st.lists(st.sampled_from(["RED", "GREEN"]), max_size=2)}
    ),
    "l": st.lists(int32, max_size=3) | int32,
    "d": int32 | st.none(),
}  # fmt: skip
overrides = st.lists(st.sampled_from(NAMES), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: typed[n] | typed[n] | json_values for n in names})
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(overrides, st.lists(st.sampled_from(NAMES), max_size=2))
def test_any_input_coerces_as_graphql_core_does_or_goes_back_to_it(
    overrides: dict[str, Any], dropped: list[str]
) -> None:
    """Valid required variables, then random values for a few of any, and a few left out."""
    inputs = {**VALID, **overrides}
    for name in dropped:
        inputs.pop(name, None)
    ours = COERCER.coerce(inputs)
    theirs = reference(inputs)
    TAKEN.append(ours is not None)
    if ours is not None:
        assert isinstance(theirs, VariableValues), theirs
        same(ours, theirs)
    elif isinstance(theirs, VariableValues):
        # graphql-core coerced it: only a default may have sent it back
        assert "d" not in inputs


def test_zz_the_property_mostly_checked_the_fast_path() -> None:
    """Runs after the property (file order): a property that only ever fell back would check nothing."""
    if TAKEN:
        assert sum(TAKEN) > len(TAKEN) / 4, (sum(TAKEN), len(TAKEN))


def test_the_requests_the_screens_send_take_the_fast_path() -> None:
    inputs = {
        "id": "U3R1ZGVudDox", "s": "hello", "i": 5, "x": 1, "b": False, "c": "RED", "t": "2026-01-01",
        "f": {"category": 3, "level": 2, "colors": "GREEN"}, "l": [1, 2], "d": 9,
    }  # fmt: skip
    ours = COERCER.coerce(inputs)
    assert ours is not None
    theirs = reference(inputs)
    assert isinstance(theirs, VariableValues)
    same(ours, theirs)
    assert ours.coerced["id"] == "U3R1ZGVudDox" and ours.coerced["x"] == 1.0
    assert ours.coerced["f"] == {"category": "3", "level": 2, "tag": "any", "colors": ["GREEN"]}
    # nullable variables left out: absent from the values, present in the sources
    minimal = COERCER.coerce({"id": 1, "i": 0, "c": "GREEN", "d": None})
    assert minimal is not None and minimal.coerced == {"id": "1", "i": 0, "c": "GREEN", "d": None}
    assert "s" in minimal.sources and "s" not in minimal.coerced


def test_errors_and_defaults_are_left_to_graphql_core() -> None:
    valid = {"id": "1", "i": 1, "c": "RED", "d": 1}
    for broken in (
        {**valid, "i": "one"},  # does not coerce
        {**valid, "i": 2**31},  # out of Int's range
        {**valid, "c": "BLUE"},  # no such enum value
        {**valid, "id": None},  # null for a non-null
        {k: v for k, v in valid.items() if k != "id"},  # a non-null missing
        {**valid, "f": {"tag": "x"}},  # an input object's required field missing
    ):
        assert COERCER.coerce(broken) is None
        assert isinstance(reference(broken), list)  # graphql-core's errors
    defaulted = {k: v for k, v in valid.items() if k != "d"}
    assert COERCER.coerce(defaulted) is None  # graphql-core applies $d's default
    theirs = reference(defaulted)
    assert isinstance(theirs, VariableValues) and theirs.coerced["d"] == 7


def test_an_operation_whose_variable_types_do_not_resolve_is_left_to_graphql_core() -> None:
    operation = parse("query($a: Nope) { f }").definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coercer = VariableCoercer(SCHEMA, operation.variable_definitions or ())
    assert not coercer.usable and coercer.coerce({"a": 1}) is None
