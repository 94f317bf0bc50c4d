"""The compiled executor's uses of library internals resolve on the installed versions, which are the
ones pyproject declares (its lower bounds are what these tests ran)."""

from __future__ import annotations

import asyncio
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

from mlc_graph.execution.compiled import compat
from resolvers.schema import schema

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = (Requirement(line) for line in project["dependencies"])
    return {r.name: r for r in requirements if r.name in compat.TESTED_WITH}


def test_the_tested_versions_are_the_installed_ones_and_the_declared_lower_bounds() -> None:
    requirements = declared()
    assert set(requirements) == set(compat.TESTED_WITH)
    for name, tested in compat.TESTED_WITH.items():
        assert version(name) == tested, f"{name} {version(name)} installed; compat names {tested}"
        specifier = requirements[name].specifier
        assert specifier.contains(tested)
        lower = [spec.version for spec in specifier if spec.operator == ">="]
        assert lower == [tested], f"{name}: declare the lowest version the tests ran (>={tested})"


def test_every_internal_resolves() -> None:
    strawberry_schema = compat.strawberry_schema_of(schema._schema)
    assert strawberry_schema is not None
    assert not compat.has_field_exception_handlers(strawberry_schema.schema_converter)
    query = strawberry_schema.schema_converter.type_map["Query"].definition
    resolved = [f for f in query.fields if f.base_resolver is not None]
    assert resolved and all(callable(compat.resolver_function(f.base_resolver)) for f in resolved)
    assert compat.VariableValues({}, {}) is not None
    assert callable(compat.complete_leaf_value)
    assert callable(compat.get_variable_values) and callable(compat.get_argument_values)
    assert callable(compat.get_variable_signature) and callable(compat.input_is_nested_too_deeply)
    assert compat.VariableValueSource._fields == ("signature", "value")
    game = strawberry_schema.schema_converter.type_map["Game"].definition
    assert [compat.schema_directive_name(d) for d in game.directives] == ["cacheControl"]


async def test_asyncio_futures_are_told_apart() -> None:
    future = asyncio.get_running_loop().create_future()
    assert getattr(future, compat.FUTURE_BLOCKING) is False
    assert getattr(object(), compat.FUTURE_BLOCKING, None) is None
