"""The cost analyzer on hand-computed examples, against the real schema and small SDL schemas."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import build_schema, parse

from bench.workloads import WORKLOADS
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.platform.errors import CostValidationError, QueryTooComplexError
from resolvers.schema import schema

BUDGET = 5000


@pytest.fixture(scope="module")
def analyzer() -> CostAnalyzer:
    return CostAnalyzer(schema._schema)


def cost(analyzer: CostAnalyzer, query: str, variables: dict[str, Any] | None = None) -> int:
    return analyzer.analyze(parse(query), variables).requested


# Teacher dashboard: teacher 1 + students connection 1 + 50 x (node 1 + assignments connection 1
# + 10 x (node 1 + game 1 + category 1)) = 1602. Edges and pageInfo are free wrappers.
DASHBOARD = """
query Dashboard($t: ID!) { teacher(id: $t) { id students(first: 50) { totalCount pageInfo { hasNextPage }
  edges { cursor node { id displayName assignments(first: 10) { edges { node { id status
  game { title category { name } } } } } } } } } }
"""
DASHBOARD_FRAGMENTS = """
query Dashboard($t: ID!) { teacher(id: $t) { id students(first: 50) { edges { node { ...Row } } } } }
fragment Row on Student { id displayName assignments(first: 10) { edges { node { ...Work } } } }
fragment Work on Assignment { id status game { ... on Game { title } category { name } } }
"""
BOMB = (
    "{ games(first: 100) { edges { node { category { games(first: 100) { edges { node { title } } } } } } } }"
)


def test_teacher_dashboard_fits_with_room_to_spare(analyzer: CostAnalyzer) -> None:
    assert cost(analyzer, DASHBOARD, {"t": "x"}) == 1602
    analyzer.analyze(parse(DASHBOARD), {"t": "x"}).check(BUDGET)


def test_fragments_are_expanded_to_the_same_price(analyzer: CostAnalyzer) -> None:
    assert cost(analyzer, DASHBOARD_FRAGMENTS, {"t": "x"}) == 1602


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.key)
def test_bench_workloads_pass_the_default_budget(analyzer: CostAnalyzer, workload: Any) -> None:
    analysis = analyzer.analyze(parse(workload.document), {}, workload.operation_name)
    assert 0 < analysis.requested <= BUDGET // 2
    analysis.check(BUDGET)


def test_games_times_their_category_games_is_refused_naming_the_multiplier(analyzer: CostAnalyzer) -> None:
    analysis = analyzer.analyze(parse(BOMB))
    # 1 + 100 x (node 1 + category 1 + games connection 1 + 100 x node 1)
    assert analysis.requested == 10301
    with pytest.raises(QueryTooComplexError) as refused:
        analysis.check(BUDGET)
    error = refused.value
    assert error.extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "cost": 10301,
        "budget": BUDGET,
        "path": "games.edges.node.category.games",
    }
    assert "`games.edges.node.category.games`" in error.message


def test_refusal_hint_names_only_arguments_the_path_takes(analyzer: CostAnalyzer) -> None:
    """No connection has `last`: the hint says `first`, and a path of fixed-size lists names none."""
    with pytest.raises(QueryTooComplexError) as refused:
        analyzer.analyze(parse(BOMB)).check(BUDGET)
    assert "lower `first` along that path" in refused.value.message
    assert "last" not in refused.value.message
    fixed = "{ categories { id } }"
    with pytest.raises(QueryTooComplexError) as by_size:
        analyzer.analyze(parse(fixed)).check(5)
    assert "`categories`" in by_size.value.message
    assert "select fewer of them" in by_size.value.message
    assert "first" not in by_size.value.message


def test_first_from_literal_variable_variable_default_and_schema_default(analyzer: CostAnalyzer) -> None:
    query = "query($n: Int) { games(first: $n) { edges { node { id } } } }"
    assert cost(analyzer, query, {"n": 7}) == 8
    assert cost(analyzer, query, {"n": None}) == 21  # null means the schema default, 20
    assert cost(analyzer, query, {}) == 21
    assert cost(analyzer, "query($n: Int = 5) { games(first: $n) { edges { node { id } } } }", {}) == 6
    assert cost(analyzer, "{ games(first: 3) { edges { node { id } } } }") == 4
    assert cost(analyzer, "{ games { edges { node { id } } } }") == 21


def test_scalars_cost_nothing_and_objects_one(analyzer: CostAnalyzer) -> None:
    assert cost(analyzer, '{ game(id: "x") { id title } }') == 1
    assert cost(analyzer, '{ game(id: "x") { id category { name } level { name } } }') == 3
    assert cost(analyzer, "{ __typename }") == 0


def test_aliases_are_priced_separately_and_repeated_keys_merge(analyzer: CostAnalyzer) -> None:
    aliased = "{ a: games(first: 2) { edges { node { id } } } b: games(first: 3) { edges { node { id } } } }"
    assert cost(analyzer, aliased) == (1 + 2) + (1 + 3)
    merged = "{ games(first: 5) { edges { node { id } } } games(first: 5) { edges { node { title } } } }"
    assert cost(analyzer, merged) == 6


def test_skip_and_include_are_honoured_when_known(analyzer: CostAnalyzer) -> None:
    query = "query($s: Boolean) { games(first: 50) @skip(if: $s) { edges { node { id } } } }"
    assert cost(analyzer, query, {"s": True}) == 0
    assert cost(analyzer, query, {"s": False}) == 51
    assert cost(analyzer, query, {}) == 51  # unknown counts as included: the worst case
    inline = "query($i: Boolean!) { ... @include(if: $i) { games(first: 4) { edges { node { id } } } } }"
    assert cost(analyzer, inline, {"i": False}) == 0
    assert cost(analyzer, inline, {"i": True}) == 5
    assert cost(analyzer, "{ games(first: 9) @include(if: false) { totalCount } }") == 0


def test_interface_takes_the_most_expensive_branch(analyzer: CostAnalyzer) -> None:
    query = """{ node(id: "x") { id
      ... on Student { assignments(first: 3) { edges { node { game { id } } } } }
      ... on Game { category { id } } } }"""
    # Student: node 1 + assignments 1 + 3 x (node 1 + game 1) = 8; Game: 1 + 1 = 2
    assert cost(analyzer, query) == 8


def test_fragment_cycle_is_a_validation_error_not_a_crash(analyzer: CostAnalyzer) -> None:
    query = """{ games { edges { node { ...A } } } }
      fragment A on Game { category { games { edges { node { ...B } } } } }
      fragment B on Game { ...A }"""
    with pytest.raises(CostValidationError) as refused:
        analyzer.analyze(parse(query))
    assert refused.value.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "A" in refused.value.message


def test_negative_first_never_prices_below_zero(analyzer: CostAnalyzer) -> None:
    assert cost(analyzer, "{ games(first: -50) { edges { node { id } } } }") == 1


def test_unknown_operation_prices_as_nothing_and_execution_reports_it(analyzer: CostAnalyzer) -> None:
    assert analyzer.analyze(parse("query A { __typename } query B { __typename }")).requested == 0


def test_cache_is_per_document_and_cost_relevant_variables(analyzer: CostAnalyzer) -> None:
    query = "query($id: ID!, $n: Int) { teacher(id: $id) { students(first: $n) { edges { node { id } } } } }"
    document = parse(query)
    first = analyzer.analyze(document, {"id": "a", "n": 5}, cache_key=query)
    assert analyzer.analyze(document, {"id": "b", "n": 5}, cache_key=query) is first  # ids do not matter
    other = analyzer.analyze(document, {"id": "a", "n": 6}, cache_key=query)
    assert other is not first
    assert (first.requested, other.requested) == (7, 8)
    # A malformed value (a list for an Int) is priced without caching and execution refuses it later.
    assert analyzer.analyze(document, {"n": [1]}, cache_key=query).requested == 22


def test_actual_cost_counts_what_was_returned(analyzer: CostAnalyzer) -> None:
    analysis = analyzer.analyze(parse(DASHBOARD), {"t": "x"})
    assignment = {"node": {"id": "a", "status": "ACTIVE", "game": {"title": "t", "category": {"name": "c"}}}}
    student: dict[str, Any] = {
        "cursor": "c",
        "node": {"id": "s", "displayName": "S", "assignments": {"edges": [assignment, assignment]}},
    }
    data = {
        "teacher": {
            "id": "t",
            "students": {"totalCount": 3, "pageInfo": {"hasNextPage": False}, "edges": [student] * 3},
        }
    }
    # teacher 1 + students 1 + 3 x (node 1 + assignments 1 + 2 x 3)
    assert analysis.actual(data) == 26
    assert analysis.actual({"teacher": None}) == 0
    extension = analysis.extension(data, BUDGET)
    assert extension == {"requestedQueryCost": 1602, "actualQueryCost": 26, "budget": BUDGET}


def test_breakdown_lists_paths_with_counts(analyzer: CostAnalyzer) -> None:
    entries = analyzer.analyze(parse(DASHBOARD), {"t": "x"}).breakdown()
    by_path = {e["path"]: e for e in entries}
    assert by_path["teacher"] == {"path": "teacher", "coordinate": "Query.teacher", "count": 1, "cost": 1602}
    game = by_path["teacher.students.edges.node.assignments.edges.node.game"]
    assert (game["count"], game["cost"]) == (500, 1000)


SDL = """
directive @cost(weight: Int!) on FIELD_DEFINITION
directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!],
  requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION
type Query {
  report: Report @cost(weight: 50)
  tags: [Tag!]! @listSize(assumedSize: 3)
  untagged: [Tag!]!
  board(top: Int = 10): Board @listSize(slicingArguments: ["top"], sizedFields: ["entries"])
  search: [Result!]!
  tree: T
}
type Mutation { save(name: String): Tag  ping: Boolean }
type Report { total: Int @cost(weight: 5) tags: [Tag!]! }
type Tag { name: String }
type Board { entries: [Tag!]! }
type Photo { tags: [Tag!]! @listSize(assumedSize: 4) }
type Song { title: String }
union Result = Photo | Song
type T { a: T b: T x: Int }
"""


@pytest.fixture(scope="module")
def sdl() -> CostAnalyzer:
    return CostAnalyzer(build_schema(SDL))


def test_directives_set_weights_and_sizes(sdl: CostAnalyzer) -> None:
    assert cost(sdl, "{ report { total } }") == 55
    assert cost(sdl, "{ tags { name } }") == 3
    assert cost(sdl, "{ untagged { name } }") == 10  # DEFAULT_LIST_SIZE
    assert cost(sdl, "{ board { entries { name } } }") == 1 + 10
    assert cost(sdl, "{ board(top: 25) { entries { name } } }") == 1 + 25


def test_union_takes_the_most_expensive_member(sdl: CostAnalyzer) -> None:
    query = "{ search { ... on Photo { tags { name } } ... on Song { title } } }"
    assert cost(sdl, query) == 10 * (1 + 4)


def test_mutations_have_a_base_cost(sdl: CostAnalyzer) -> None:
    analysis = sdl.analyze(parse('mutation { save(name: "x") { name } ping }'))
    assert (analysis.requested, analysis.operation) == (20, "mutation")


def test_fragment_bombs_price_in_linear_time(sdl: CostAnalyzer) -> None:
    """2^40 response paths, priced through memoised fragments instead of expanded."""
    levels = 40
    fragments = "".join(
        f"fragment F{i} on T {{ a {{ ...F{i + 1} }} b {{ ...F{i + 1} }} }}\n" for i in range(levels)
    )
    query = "{ tree { ...F0 } }\n" + fragments + f"fragment F{levels} on T {{ x }}"
    analysis = sdl.analyze(parse(query))
    assert analysis.requested == 2 ** (levels + 1) - 1
    with pytest.raises(QueryTooComplexError):
        analysis.check(BUDGET)


def test_actual_cost_of_weighted_scalars_lists_and_nulls(sdl: CostAnalyzer) -> None:
    analysis = sdl.analyze(parse("{ report { total tags { name } } board(top: 3) { entries { name } } }"))
    assert analysis.requested == (50 + 5 + 10) + (1 + 3)
    data = {"report": {"total": 7, "tags": [{"name": "a"}, None]}, "board": {"entries": []}}
    assert analysis.actual(data) == (50 + 5 + 1) + 1
    assert analysis.actual({"report": {"total": None, "tags": []}, "board": None}) == 50


def test_cache_keeps_absent_null_bool_and_float_apart(analyzer: CostAnalyzer) -> None:
    query = "query($n: Int = 5) { games(first: $n) { edges { node { id } } } }"
    document = parse(query)
    prices = [
        analyzer.analyze(document, variables, cache_key=query).requested
        for variables in ({}, {"n": None}, {"n": 1}, {"n": True}, {"n": 100.0}, {"n": 100})
    ]
    # absent: the variable's default 5; null: the schema's 20; True is not an Int (execution refuses it,
    # priced at the default); 100.0 is coerced to the Int 100 by graphql-core, so it must price as 100.
    assert prices == [6, 21, 2, 21, 101, 101]
