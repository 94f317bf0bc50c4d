"""The cache policy of a document, from the schema's @cacheControl hints (Apollo's rules, applied statically)."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLSchema, build_schema

from mlc_graph.execution.cache_policy import CacheHints, CachePolicy
from mlc_graph.execution.documents import Documents
from resolvers.schema import schema as strawberry_schema

SCHEMA = strawberry_schema._schema

GAMES_PAGE = """
query Library($after: String) {
  games(first: 20, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title difficulty thumbnailUrl category { id name } level { name position } } }
  }
}
"""


def policy_of(text: str, operation: str | None = None, schema: GraphQLSchema = SCHEMA) -> CachePolicy | None:
    parsed = Documents(schema, production=False, cache_size=0).get(text)
    assert parsed.errors == (), parsed.errors
    return parsed.cache_policies.get(operation)


PUBLIC_300 = CachePolicy(300, public=True)
PUBLIC_3600 = CachePolicy(3600, public=True)
PRIVATE_300 = CachePolicy(300, public=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The catalogue screens: the library page, the category list, a category with its games.
        (GAMES_PAGE, PUBLIC_300),
        ("{ categories { id name description } }", PUBLIC_3600),
        ("{ categories { name games(first: 5) { totalCount } } }", PUBLIC_300),
        ("{ categories { name games { edges { node { title level { name } } } } } }", PUBLIC_300),
        # Aliases change nothing: the fields are what they are.
        ("{ a: categories { n: name } b: games { t: totalCount } }", PUBLIC_300),
        # Fragments, named and inline, at the root and below, spread twice.
        (
            "query { ...Lib ...Lib } fragment Lib on Query { games { edges { node { ...G } } } } "
            "fragment G on Game { title category { name } }",
            PUBLIC_300,
        ),
        ("{ ... on Query { categories { ... { name } } } }", PUBLIC_3600),
        # __typename takes its parent's policy, at the root too.
        ("{ __typename categories { __typename name } }", PUBLIC_3600),
        ("{ __typename }", None),  # nothing says how long: not cacheable
        # Introspection is per environment: never cached.
        ("{ categories { name } __schema { queryType { name } } }", None),
        ('{ categories { name } __type(name: "Game") { name } }', None),
        # A game by id: admins also see drafts, so only the caller's own cache may keep it.
        ('{ game(id: "R2FtZTox") { title category { name } } }', PRIVATE_300),
        ('{ game(id: "R2FtZTox") { title } categories { name } }', PRIVATE_300),
        # Anything of the viewer, students, teachers, boards, sync: no hint, not cacheable.
        ("{ viewer { role } }", None),
        ("{ viewer { rateLimit { remaining } } }", None),
        ("{ categories { name } viewer { role } }", None),
        ('{ student(id: "x") { displayName } }', None),
        ('{ leaderboard(gameId: "x") { entries { rank score } } }', None),
        ("{ changes { nextToken changes { node { ... on Game { title } } } } }", None),
        # The catalogue reached through per-user data is per-user data.
        (
            "{ viewer { student { assignments { edges { node { game { title category { name } } } } } } } }",
            None,
        ),
        # node() may be anything, students included: its Game fragment does not make it public.
        ('{ node(id: "x") { ... on Game { title } } }', None),
        # @include/@skip: a field a variable may include counts; a literal leaves it out for sure.
        ("query ($v: Boolean!) { categories { name } viewer @include(if: $v) { role } }", None),
        ("query ($v: Boolean!) { categories { name } viewer @skip(if: $v) { role } }", None),
        ("{ categories { name } viewer @include(if: false) { role } }", PUBLIC_3600),
        ("{ categories { name } viewer @skip(if: true) { role } }", PUBLIC_3600),
        ("{ categories { name } ... @skip(if: true) { viewer { role } } }", PUBLIC_3600),
        ("{ categories { name } viewer @skip(if: false) { role } }", None),
    ],
)
def test_policy_of_documents(text: str, expected: CachePolicy | None) -> None:
    assert policy_of(text) == expected


def test_mutations_and_subscriptions_are_never_cacheable() -> None:
    parsed = Documents(SCHEMA, production=False, cache_size=0).get(
        'mutation End { endSession { ended } } subscription Board { leaderboardUpdated(gameId: "x") { scope } } '
        "query Cats { categories { name } }"
    )
    assert parsed.errors == (), parsed.errors
    assert dict(parsed.cache_policies) == {"Cats": PUBLIC_3600}


def test_each_operation_of_a_document_has_its_own_policy() -> None:
    parsed = Documents(SCHEMA, production=False, cache_size=0).get(
        "query Cats { categories { name } } query Me { viewer { role } } query Lib { games { totalCount } }"
    )
    assert dict(parsed.cache_policies) == {"Cats": PUBLIC_3600, "Lib": PUBLIC_300}


def test_the_policy_is_computed_once_per_document() -> None:
    calls: list[Any] = []

    class Counting(CacheHints):
        def policy(self, operation: Any, fragments: Any) -> CachePolicy | None:
            calls.append(operation)
            return super().policy(operation, fragments)

    documents = Documents(SCHEMA, production=False, cache_size=8)
    documents.cache_hints = Counting(SCHEMA)
    first = documents.get(GAMES_PAGE)
    again = documents.get(GAMES_PAGE)
    assert again is first and documents.cache.hits == 1
    assert len(calls) == 1 and first.cache_policies[None] == PUBLIC_300


# Apollo's rules on a schema built for them: field over type, scalars inheriting, PRIVATE anywhere,
# inheritMaxAge, interfaces and unions.
SDL = """
enum CacheControlScope { PUBLIC PRIVATE }
directive @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean)
  on FIELD_DEFINITION | OBJECT | INTERFACE | UNION

type Query {
  shop: Shop @cacheControl(maxAge: 600)
  shops: [Shop!]!
  brief: Brief @cacheControl(maxAge: 100)
  count: Int
  hinted: Int @cacheControl(maxAge: 50)
  thing: Thing @cacheControl(maxAge: 600)
  anything: Anything @cacheControl(maxAge: 600)
  wrapper: Wrapper @cacheControl(maxAge: 60)
}
type Shop @cacheControl(maxAge: 120) {
  name: String
  stock: Int @cacheControl(maxAge: 10)
  basket: String @cacheControl(scope: PRIVATE)
  owner: Person
  wrapper: Wrapper
  pinned: Person @cacheControl(inheritMaxAge: true)
}
type Person { name: String }
type Brief @cacheControl(maxAge: 1000) { text: String shop: Shop }
type Wrapper @cacheControl(inheritMaxAge: true) { shop: Shop size: Int }
interface Thing { id: ID }
type Cheap implements Thing @cacheControl(maxAge: 5) { id: ID }
type Dear implements Thing @cacheControl(maxAge: 500) {
  id: ID @cacheControl(maxAge: 30)
  secret: String @cacheControl(scope: PRIVATE)
}
union Anything = Cheap | Shop
"""
TOY = build_schema(SDL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{ shop { name } }", CachePolicy(600, True)),  # the field's own hint beats its type's
        ("{ shops { name } }", CachePolicy(120, True)),  # else the type's, at the root too
        ("{ shop { stock } }", CachePolicy(10, True)),  # a scalar's hint restricts
        ("{ shop { name basket } }", CachePolicy(600, False)),  # PRIVATE anywhere makes it private
        ("{ count }", None),  # a root field without a hint is 0, scalar or not
        ("{ hinted }", CachePolicy(50, True)),
        ("{ shop { owner { name } } }", None),  # an object without a hint is 0
        ("{ shop { pinned { name } } }", CachePolicy(600, True)),  # unless the field inherits
        ("{ shop { wrapper { size } } }", CachePolicy(600, True)),  # or its type does
        ("{ wrapper { shop { name } } }", CachePolicy(60, True)),  # a root field never inherits
        ("{ brief { text shop { name } } }", CachePolicy(100, True)),
        # A field selected on an interface counts the hints of that field on every type it may be.
        ("{ thing { id } }", CachePolicy(30, True)),
        ("{ thing { ... on Cheap { id } } }", CachePolicy(600, True)),
        ("{ thing { ... on Dear { secret } } }", CachePolicy(600, False)),
        ("{ anything { ... on Shop { name } } }", CachePolicy(600, True)),
        ("{ anything { ... on Shop { owner { name } } } }", None),
    ],
)
def test_apollo_rules(text: str, expected: CachePolicy | None) -> None:
    assert policy_of(text, schema=TOY) == expected


def test_cache_control_header_value() -> None:
    assert CachePolicy(300, public=True).cache_control == "public, max-age=300"
    assert CachePolicy(60, public=False).cache_control == "private, max-age=60"
