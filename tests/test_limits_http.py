"""Request limits: each refuses its attack with its own code; the product's own documents all pass."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query, parse, validate

from bench.workloads import WORKLOADS
from mlc_graph.limits import IntrospectionDepthRule, Limits, check_document
from resolvers.schema import schema

LIMITS = Limits()


def codes(query: str, limits: Limits = LIMITS) -> list[str]:
    return [error.extensions["code"] for error in check_document(parse(query), limits)]  # type: ignore[index]


def nested(depth: int) -> str:
    """`games { edges { node { category { games ... } } } }` with `depth` levels of fields."""
    levels = ["games", "edges", "node", "category"]
    opened = [levels[i % 4] for i in range(depth - 1)]
    return "{ " + " { ".join(opened) + " { __typename" + " }" * len(opened) + " }"


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.key)
def test_product_documents_pass(workload: object) -> None:
    assert codes(workload.document) == []  # type: ignore[attr-defined]


def test_introspection_query_passes_every_limit() -> None:
    document = parse(get_introspection_query(descriptions=True))
    assert check_document(document, LIMITS) == []
    assert validate(schema._schema, document, [IntrospectionDepthRule]) == []


def test_depth_counts_relay_wrappers_and_fragments() -> None:
    assert codes(nested(15)) == []
    assert codes(nested(16)) == ["QUERY_TOO_DEEP"]
    through_fragment = (
        "{ games { edges { node { ...Deep } } } } "
        "fragment Deep on Game { category { games { edges { node { ...More } } } } } "
        "fragment More on Game { category { games { edges { node { category { games { edges { node { id } } } } } } } } }"
    )
    # games edges node | category games edges node | category games edges node category games edges node id
    assert codes(through_fragment) == ["QUERY_TOO_DEEP"]
    assert codes(nested(6), Limits(max_depth=5)) == ["QUERY_TOO_DEEP"]


def test_fragment_cycles_do_not_hang_the_depth_check() -> None:
    assert (
        codes(
            "{ games { ...A } } fragment A on GameConnection { ...B } fragment B on GameConnection { ...A }"
        )
        == []
    )


def test_aliases() -> None:
    assert codes("{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }") == []
    assert codes("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }") == ["TOO_MANY_ALIASES"]


def test_directives_per_field() -> None:
    five = "@skip(if: false) " * 5
    assert codes("{ __typename " + five + "}") == []
    assert codes("{ __typename " + five + "@include(if: true) }") == ["TOO_MANY_DIRECTIVES"]
    assert codes("{ ... " + five * 2 + "{ __typename } }") == ["TOO_MANY_DIRECTIVES"]


def test_repeated_fields_count_through_inline_fragments() -> None:
    assert codes("{ " + "__typename " * 10 + "}") == []
    assert codes("{ " + "__typename " * 11 + "}") == ["TOO_MANY_REPEATED_FIELDS"]
    spread = "{ " + "... on Query { __typename } " * 11 + "}"
    assert codes(spread) == ["TOO_MANY_REPEATED_FIELDS"]
    deep = '{ game(id: "x") { ' + "title " * 11 + "} }"
    assert codes(deep) == ["TOO_MANY_REPEATED_FIELDS"]


def test_introspection_bomb_has_its_own_code() -> None:
    bomb = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
    errors = validate(schema._schema, parse(bomb), [IntrospectionDepthRule])
    assert [e.extensions["code"] for e in errors] == ["INTROSPECTION_TOO_DEEP"]  # type: ignore[index]
