"""Relay plumbing: opaque global ids, the Node interface, connections with keyset cursors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
import strawberry

from loaders.pagination import MAX_PAGE_SIZE, Page, PageArgs
from mlc_graph.platform.errors import BadUserInputError, NotFoundError
from resolvers.directives import CacheControl

T = TypeVar("T")


# Pure functions of small keys, called for every id and cursor of every page (150 ids on a library page):
# remembered per process, bounded (an entry is ~150 bytes).
_MEMO = 65536


@functools.lru_cache(maxsize=_MEMO)
def encode_global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_global_id(value: str) -> tuple[str, int]:
    """(type name, primary key); a malformed id reads as not found, like an id that does not exist."""
    try:
        padded = value + "=" * (-len(value) % 4)
        type_name, _, raw_pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return type_name, int(raw_pk)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise NotFoundError(f"No node with id {value!r}") from exc


def expect_global_id(value: str, type_name: str) -> int:
    """The primary key of an id that must name a `type_name`."""
    found_type, pk = decode_global_id(value)
    if found_type != type_name:
        raise NotFoundError(f"No {type_name} with id {value!r}")
    return pk


def _cursor_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def encode_cursor(keyset: Sequence[Any]) -> str:
    if type(keyset) is tuple:  # the rows' keysets: hashable
        return _encode_keyset(keyset)
    return _encode(keyset)


@functools.lru_cache(maxsize=_MEMO)
def _encode_keyset(keyset: tuple[Any, ...]) -> str:
    return _encode(keyset)


def _encode(keyset: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(keyset), default=_cursor_default)).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> tuple[Any, ...]:
    """The keyset behind a cursor, each part checked and converted to the kind the query sorts on."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        values: list[Any] = []
        for kind, part in zip(kinds, parts, strict=True):
            if kind is dt.datetime:
                values.append(dt.datetime.fromisoformat(part))
            elif kind is dt.date:
                values.append(dt.date.fromisoformat(part))
            elif kind is int:
                if not isinstance(part, int):
                    raise ValueError("not an int")
                values.append(part)
            else:
                if not isinstance(part, str) or "\x00" in part:
                    # NUL decodes from JSON but no text column can hold it: the cursor is not one of ours.
                    raise ValueError("not a string a cursor can hold")
                values.append(part)
        return tuple(values)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise BadUserInputError(f"Invalid cursor {cursor!r}", argument="after") from exc


def page_args(
    first: int | None, after: str | None, kinds: Sequence[type], filter_: Any = None, default: int = 20
) -> PageArgs:
    """Validate `first`/`after` the same way for every connection; a null `first` means the default."""
    if first is None:
        first = default
    if first < 0:
        raise BadUserInputError("'first' must not be negative", argument="first")
    if first > MAX_PAGE_SIZE:
        raise BadUserInputError(
            f"'first' must be at most {MAX_PAGE_SIZE}, got {first}", argument="first", maximum=MAX_PAGE_SIZE
        )
    return PageArgs(first, decode_cursor(after, kinds) if after else None, filter_)


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID = strawberry.field(
        description="The global id: pass it to Query.node to fetch this object again."
    )


def global_id_field(type_name: str) -> Any:
    """The `id` field of a Node type whose rows carry an integer `id`."""

    def resolve_id(root: Any) -> strawberry.ID:
        return strawberry.ID(encode_global_id(type_name, root.id))

    return strawberry.field(
        resolver=resolve_id, description="The global id: pass it to Query.node to fetch this object again."
    )


# The wrappers of a list add nothing to cache for: they are as fresh as the field that returned them.
@strawberry.type(directives=[CacheControl(inherit_max_age=True)])
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def resolve_cursor(root: Edge[Any]) -> str:
    # Computed only when selected: most pages ask for nodes, not a cursor per edge (issue 7).
    return encode_cursor(root.node.keyset)


@strawberry.type(directives=[CacheControl(inherit_max_age=True)])
class Edge(Generic[T]):
    cursor: str = strawberry.field(resolver=resolve_cursor)
    node: T


async def resolve_total_count(root: Connection[Any]) -> int:
    # Each connection counts its whole list through a DataLoader, so the count runs only when selected
    # and one statement serves every parent of a level (issue 12: len(edges) was the page size).
    return await root._count()


async def count_nothing() -> int:
    """The count of a list the viewer may not see: empty, like its page."""
    return 0


@strawberry.type(directives=[CacheControl(inherit_max_age=True)])
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int]]]
    total_count: int = strawberry.field(
        resolver=resolve_total_count, description="How many items the whole list has (all pages)."
    )


def connection_from_page(
    page: Page[Any], has_previous: bool, count: Callable[[], Awaitable[int]]
) -> Connection[Any]:
    rows = page.rows
    edges = [Edge(node=row) for row in rows]
    info = PageInfo(
        has_next_page=page.has_next,
        has_previous_page=has_previous,
        start_cursor=encode_cursor(rows[0].keyset) if rows else None,
        end_cursor=encode_cursor(rows[-1].keyset) if rows else None,
    )
    return Connection(edges=edges, page_info=info, _count=count)
