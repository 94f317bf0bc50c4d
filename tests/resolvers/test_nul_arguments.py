"""A NUL byte in any string argument of a read, or in a cursor, is the client's mistake: BAD_USER_INPUT.

PostgreSQL text cannot hold U+0000, so such a value reaching a statement used to surface as asyncpg's
CharacterNotInRepertoireError, masked as INTERNAL_SERVER_ERROR. The walk below finds every String and ID
argument (and input field) of every field reachable from Query by introspection, so an argument added
later is covered without touching this test.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    Undefined,
    get_named_type,
)

from mlc_graph.platform.errors import ApiError
from resolvers.schema import schema
from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal, run

NUL = "x\u0000y"


def nul_cursor() -> str:
    """A well-formed cursor (base64 of a JSON keyset) whose text parts hold NUL."""
    return base64.urlsafe_b64encode(orjson.dumps([NUL, NUL, 1])).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Hop:
    field: str
    args: str  # GraphQL argument text, "" when none


@dataclass(frozen=True, slots=True)
class Probe:
    coordinate: str  # Type.field(argument[.inputField])
    query: str


def _literal(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sample(type_: GraphQLInputType, ids: dict[str, str]) -> str | None:
    """A valid literal for a required argument, or None when the walk cannot make one."""
    if isinstance(type_, GraphQLNonNull):
        return _sample(type_.of_type, ids)
    if isinstance(type_, GraphQLList):
        inner = _sample(type_.of_type, ids)
        return None if inner is None else f"[{inner}]"
    if isinstance(type_, GraphQLEnumType):
        return str(next(iter(type_.values)))
    if isinstance(type_, GraphQLScalarType):
        return {
            "Int": "1",
            "Float": "1.0",
            "Boolean": "true",
            "String": '"/"',
            "DateTime": _literal("2020-01-01T00:00:00+00:00"),
            "Date": _literal("2020-01-01"),
        }.get(type_.name)
    return None


def _id_for(argument: str, coordinate: str, ids: dict[str, str]) -> str:
    for type_name, value in ids.items():
        if argument.lower().startswith(type_name.lower()) or coordinate.lower().endswith(
            f".{type_name.lower()}"
        ):
            return _literal(value)
    return _literal(ids["Teacher"])  # Query.node: any object of the organization


def _required_args(
    field_name: str, field: GraphQLField, parent: str, ids: dict[str, str], skip: str = ""
) -> str | None:
    parts: list[str] = []
    for name, arg in field.args.items():
        if name == skip or not isinstance(arg.type, GraphQLNonNull) or arg.default_value is not Undefined:
            continue
        if get_named_type(arg.type).name == "ID":
            value: str | None = _id_for(name, f"{parent}.{field_name}", ids)
        else:
            value = _sample(arg.type, ids)
        if value is None:
            return None
        parts.append(f"{name}: {value}")
    return ", ".join(parts)


def _paths(ids: dict[str, str]) -> dict[str, list[Hop]]:
    """The shortest selection path from Query to each object type, trying `viewer` first.

    Only through fields of an object type: `node(id)` could reach any type, but with an id of another
    type its fragment would select nothing and a probe under it would pass without running.
    """
    types = schema._schema.type_map
    query_type = schema._schema.query_type
    assert query_type is not None
    found: dict[str, list[Hop]] = {query_type.name: []}
    queue: deque[GraphQLObjectType] = deque([query_type])
    while queue:
        parent = queue.popleft()
        fields = sorted(parent.fields.items(), key=lambda item: item[0] != "viewer")
        for name, field in fields:
            named = get_named_type(field.type)
            args = _required_args(name, field, parent.name, ids)
            if args is None:
                continue
            if isinstance(named, GraphQLObjectType) and named.name not in found and named.name[:2] != "__":
                found[named.name] = [*found[parent.name], Hop(name, args)]
                queue.append(named)
    assert {"Organization", "Student", "Teacher", "Game"} <= set(found), sorted(found)
    return {name: path for name, path in found.items() if name in types}


def _leaf(type_: Any) -> str:
    named = get_named_type(type_)
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
        return "{ __typename }"
    return ""


def _wrap(path: list[Hop], inner: str) -> str:
    text = inner
    for hop in reversed(path):
        call = f"{hop.field}({hop.args})" if hop.args else hop.field
        text = f"{call} {{ {text} }}"
    return "{ " + text + " }"


def _string_slots(name: str, arg: GraphQLArgument) -> list[tuple[str, str]]:
    """(label, literal) for each way this argument can carry a NUL string: itself or its input fields."""
    named = get_named_type(arg.type)
    if isinstance(named, GraphQLScalarType) and named.name in ("String", "ID"):
        literal = _literal(nul_cursor() if name in ("after", "before") else NUL)
        return [(name, literal)]
    if isinstance(named, GraphQLInputObjectType):
        slots = []
        for field_name, field in named.fields.items():
            inner = get_named_type(field.type)
            if isinstance(inner, GraphQLScalarType) and inner.name in ("String", "ID"):
                slots.append((f"{name}.{field_name}", f"{{{field_name}: {_literal(NUL)}}}"))
        return slots
    return []


def probes(ids: dict[str, str]) -> list[Probe]:
    found: list[Probe] = []
    paths = _paths(ids)
    for type_name, path in sorted(paths.items()):
        type_ = schema._schema.type_map[type_name]
        assert isinstance(type_, GraphQLObjectType)
        for field_name, field in type_.fields.items():
            for arg_name, arg in field.args.items():
                for label, literal in _string_slots(arg_name, arg):
                    others = _required_args(field_name, field, type_name, ids, skip=arg_name)
                    if others is None:
                        continue
                    args = ", ".join(a for a in (others, f"{arg_name}: {literal}") if a)
                    selection = f"{field_name}({args}) {_leaf(field.type)}"
                    found.append(Probe(f"{type_name}.{field_name}({label})", _wrap(path, selection)))
    return found


async def _world(pool: asyncpg.Pool) -> tuple[int, int, dict[str, str]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, 2)
    category, level, games = await make_catalogue(pool, games=2)
    await make_assignments(pool, org, students, games)
    await make_score(pool, org, students[0], games[0], 500, at=dt.datetime.now(dt.UTC))
    ids = {
        "Teacher": gid("Teacher", teacher),
        "Student": gid("Student", students[0]),
        "Game": gid("Game", games[0]),
        "Category": gid("Category", category),
        "Level": gid("Level", level),
    }
    return org, teacher, ids


async def test_every_string_argument_of_a_read_refuses_nul_as_bad_user_input(clean_db: asyncpg.Pool) -> None:
    org, teacher, ids = await _world(clean_db)
    viewer = principal("admin", teacher, org)
    checked: dict[str, str] = {}
    for probe in probes(ids):
        result, _ = await run(clean_db, probe.query, viewer=viewer)
        for error in result.errors or ():
            assert isinstance(error.original_error, ApiError | None), (probe.coordinate, probe.query, error)
            code = (error.extensions or {}).get("code")
            assert code not in (None, "INTERNAL_SERVER_ERROR"), (probe.coordinate, probe.query, error)
        checked[probe.coordinate] = (
            (result.errors[0].extensions or {}).get("code", "") if result.errors else "OK"
        )
    # The walk reached the arguments the review found, and each of them now says whose mistake it is.
    for coordinate in (
        "Query.webVitals(page)",
        "Query.webVitals(release)",
        "Teacher.students(after)",
        "Organization.teachers(after)",
        "Student.scores(after)",
        "Query.games(after)",
    ):
        assert checked.get(coordinate) == "BAD_USER_INPUT", (coordinate, checked.get(coordinate))
    assert len(checked) >= 15, sorted(checked)


async def test_a_cursor_holding_nul_is_refused_before_any_statement(clean_db: asyncpg.Pool) -> None:
    org, teacher, ids = await _world(clean_db)
    query = f'{{ teacher(id: "{ids["Teacher"]}") {{ students(after: "{nul_cursor()}") {{ totalCount }} }} }}'
    result, stats = await run(clean_db, query, viewer=principal("teacher", teacher, org))
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": "after"}
    assert stats.statements == 1  # the teacher; the page never ran
