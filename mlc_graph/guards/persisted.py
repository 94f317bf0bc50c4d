"""Persisted operations: Apollo's automatic persisted queries (APQ) and a trusted-documents allow-list.

APQ: a client sends `extensions.persistedQuery = {version: 1, sha256Hash}` without `query`; the server
answers PERSISTED_QUERY_NOT_FOUND until the client sends the hash once with the query, which registers it
once it has run (so only valid documents within the limits and the budget are ever stored).
Works over GET, so a CDN can cache `GET /graphql?extensions=...&variables=...` by URL.

Trusted documents (settings.trusted_documents_only, for production): only documents registered with
`mlc-graph persist FILE` run, sent by hash or in full; anything else is PERSISTED_QUERY_NOT_ALLOWED and
clients cannot register documents.

Stores, looked up in order: this process's bounded cache, then Redis when REDIS_URL is set, then (trusted
documents) the persisted_documents table, which `persist` writes and which outlives Redis and restarts.

Errors (extensions.code):
    PERSISTED_QUERY_NOT_FOUND      unknown hash sent without its query (APQ: resend with the query)
    PERSISTED_QUERY_NOT_ALLOWED    trusted-documents mode and the document is not registered
    PERSISTED_QUERY_HASH_MISMATCH  the query's SHA-256 is not the hash sent with it
    PERSISTED_QUERY_NOT_SUPPORTED  malformed persistedQuery (version other than 1, hash not 64 hex digits)
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import asyncpg
from graphql import (
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    parse,
    print_ast,
)
from graphql.language import Node

from mlc_graph.platform.config import Settings
from mlc_graph.platform.errors import Refusal
from mlc_graph.platform.redis import RedisClient, connect

log = logging.getLogger(__name__)

VERSION = 1
_HASH = re.compile(r"[0-9a-f]{64}")
APQ_TTL_SECONDS = 30 * 24 * 3600  # an APQ entry is a cache: clients re-register after it expires
MISS_TTL_SECONDS = 10.0  # trusted mode: a hash not in the table is not asked for again this soon
MAX_DOCUMENT_CHARS = 100_000

SELECT_PERSISTED_DOCUMENT = "SELECT body FROM persisted_documents WHERE sha256 = $1"
SELECT_PERSISTED_DOCUMENTS = "SELECT sha256, body FROM persisted_documents"
INSERT_PERSISTED_DOCUMENT = """
INSERT INTO persisted_documents (sha256, body, name) VALUES ($1, $2, $3)
ON CONFLICT (sha256) DO NOTHING
"""


def document_hash(text: str) -> str:
    """The APQ hash: hex SHA-256 of the UTF-8 document text."""
    return hashlib.sha256(text.encode()).hexdigest()


def _refused(message: str, code: str) -> Refusal:
    return Refusal(GraphQLError(message, extensions={"code": code}))


class DocumentStore(Protocol):
    async def get(self, sha256: str) -> str | None: ...

    async def put(self, sha256: str, text: str) -> None: ...


class MemoryStore:
    """A bounded LRU in this process: the only store without Redis, the first layer with it."""

    def __init__(self, max_entries: int = 10_000, max_chars: int = 32_000_000) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars  # the bound that matters: documents can be 100 KB each
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._chars = 0

    def peek(self, sha256: str) -> str | None:
        text = self._entries.get(sha256)
        if text is not None:
            self._entries.move_to_end(sha256)
        return text

    async def get(self, sha256: str) -> str | None:
        return self.peek(sha256)

    async def put(self, sha256: str, text: str) -> None:
        previous = self._entries.pop(sha256, None)
        self._chars += len(text) - (len(previous) if previous is not None else 0)
        self._entries[sha256] = text
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            _, evicted = self._entries.popitem(last=False)
            self._chars -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)


class RedisStore:
    """Documents shared by every instance; a Redis failure reads as a miss (the query can be resent)."""

    def __init__(self, client: RedisClient, prefix: str, ttl_seconds: int | None = APQ_TTL_SECONDS) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_seconds

    async def get(self, sha256: str) -> str | None:
        try:
            value = await self._client.get(self._prefix + sha256)
        except Exception as exc:  # any client failure reads as a miss (platform/redis.py)
            log.warning("persisted documents: Redis read failed: %s", exc)
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def put(self, sha256: str, text: str) -> None:
        try:
            await self._client.set(self._prefix + sha256, text, ex=self._ttl)
        except Exception as exc:  # any client failure only skips the shared copy
            log.warning("persisted documents: Redis write failed: %s", exc)


class TableStore:
    """The persisted_documents table: the trusted allow-list of record."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, sha256: str) -> str | None:
        body: str | None = await self._pool.fetchval(SELECT_PERSISTED_DOCUMENT, sha256)
        return body

    async def put(self, sha256: str, text: str, name: str | None = None) -> None:
        await self._pool.execute(INSERT_PERSISTED_DOCUMENT, sha256, text, name)

    async def all(self) -> list[tuple[str, str]]:
        return [(r["sha256"], r["body"]) for r in await self._pool.fetch(SELECT_PERSISTED_DOCUMENTS)]


class LayeredStore:
    """Looks in each layer in turn and copies a hit into the layers above it."""

    def __init__(self, layers: Iterable[DocumentStore]) -> None:
        self.layers = list(layers)

    async def get(self, sha256: str) -> str | None:
        for depth, layer in enumerate(self.layers):
            text = await layer.get(sha256)
            if text is not None:
                for upper in self.layers[:depth]:
                    await upper.put(sha256, text)
                return text
        return None

    async def put(self, sha256: str, text: str) -> None:
        for layer in self.layers:
            await layer.put(sha256, text)


class PersistedQueries:
    """The before-parse stage: fills `query` from a hash, registers APQ documents, enforces the allow-list."""

    def __init__(self, store: DocumentStore, memory: MemoryStore, trusted_only: bool = False) -> None:
        self.store = store
        self.memory = memory  # the first layer of `store`: a hit there costs no await on I/O
        self.trusted_only = trusted_only
        self._misses: OrderedDict[str, float] = OrderedDict()

    async def _lookup(self, sha256: str) -> str | None:
        text = self.memory.peek(sha256)
        if text is not None:
            return text
        missed = self._misses.get(sha256)
        if missed is not None and time.monotonic() - missed < MISS_TTL_SECONDS:
            return None  # unknown hashes in a loop must not become a database query each
        text = await self.store.get(sha256)
        if text is None:
            self._misses[sha256] = time.monotonic()
            while len(self._misses) > 10_000:
                self._misses.popitem(last=False)
        return text

    async def resolve(self, query: str | None, extensions: Mapping[str, Any] | None) -> str | None:
        """The document text to run; raises `Refusal`."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            if self.trusted_only and query is not None and await self._lookup(document_hash(query)) is None:
                raise _refused(
                    "Only registered (trusted) documents may run on this server",
                    "PERSISTED_QUERY_NOT_ALLOWED",
                )
            return query
        sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if not isinstance(persisted, dict) or persisted.get("version") != VERSION:
            raise _refused(
                "Unsupported persistedQuery version: send version 1", "PERSISTED_QUERY_NOT_SUPPORTED"
            )
        if not isinstance(sha256, str) or not _HASH.fullmatch(sha256):
            raise _refused(
                "persistedQuery.sha256Hash must be 64 lowercase hex digits", "PERSISTED_QUERY_NOT_SUPPORTED"
            )
        if query is None:
            query = await self._lookup(sha256)
            if query is None:
                if self.trusted_only:
                    raise _refused(
                        "This document is not registered on this server", "PERSISTED_QUERY_NOT_ALLOWED"
                    )
                raise _refused("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        elif document_hash(query) != sha256:
            raise _refused(
                "The query does not match persistedQuery.sha256Hash", "PERSISTED_QUERY_HASH_MISMATCH"
            )
        elif self.trusted_only and await self._lookup(sha256) is None:
            raise _refused("This document is not registered on this server", "PERSISTED_QUERY_NOT_ALLOWED")
        # APQ mode: a query sent with its hash is registered by `remember` once it has run (valid, within
        # the limits and the budget), so junk sent with a matching hash never fills the stores.
        return query

    async def remember(self, query: str | None, extensions: Mapping[str, Any] | None) -> None:
        """APQ registration of a document sent with its hash, called after it ran."""
        persisted = (extensions or {}).get("persistedQuery")
        if self.trusted_only or query is None or not isinstance(persisted, dict):
            return
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or self.memory.peek(sha256) is not None:
            return
        if len(query) <= MAX_DOCUMENT_CHARS and document_hash(query) == sha256:
            self._misses.pop(sha256, None)
            await self.store.put(sha256, query)


def build(settings: Settings, pool: asyncpg.Pool | None, redis: RedisClient | None) -> PersistedQueries:
    """The stage for these settings: APQ in Redis or memory; trusted mode adds the table behind them."""
    memory = MemoryStore()
    layers: list[DocumentStore] = [memory]
    if settings.trusted_documents_only:
        if redis is not None:
            layers.append(RedisStore(redis, settings.redis_prefix + "trusted:", ttl_seconds=None))
        if pool is not None:
            layers.append(TableStore(pool))
    elif redis is not None:
        layers.append(RedisStore(redis, settings.redis_prefix + "apq:"))
    return PersistedQueries(LayeredStore(layers), memory, settings.trusted_documents_only)


async def warm(stage: PersistedQueries, pool: asyncpg.Pool) -> int:
    """Load the registered documents into this process (so they also run by hash in APQ mode)."""
    try:
        rows = await TableStore(pool).all()
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("persisted documents not loaded: %s", exc)
        return 0
    for sha256, body in rows:
        await stage.memory.put(sha256, body)
    return len(rows)


def _spreads(node: Node, into: set[str]) -> set[str]:
    for child in _children(node):
        if isinstance(child, FragmentSpreadNode):
            into.add(child.name.value)
        _spreads(child, into)
    return into


def _children(node: Node) -> Iterable[Node]:
    selection_set = getattr(node, "selection_set", None)
    return selection_set.selections if selection_set is not None else ()


def documents_of(text: str) -> list[tuple[str | None, str]]:
    """What `persist` registers from a .graphql file: the file as it is (clients that send the file), and
    when it holds several operations, each one printed with the fragments it uses (clients that split)."""
    document = parse(text)
    found: list[tuple[str | None, str]] = []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names = [op.name.value if op.name else None for op in operations]
    found.append((", ".join(n or "(anonymous)" for n in names) or None, text))
    if len(operations) > 1:
        for operation, name in zip(operations, names, strict=True):
            needed: set[str] = set()
            pending = _spreads(operation, set())
            while pending:
                fragment = pending.pop()
                if fragment in needed or fragment not in fragments:
                    continue
                needed.add(fragment)
                pending |= _spreads(fragments[fragment], set())
            parts = [operation, *(fragments[f] for f in sorted(needed))]
            found.append((name, "\n\n".join(print_ast(part) for part in parts)))
    return found


async def register(
    settings: Settings, documents: Iterable[tuple[str | None, str]], conn: asyncpg.Connection
) -> list[tuple[str, str | None]]:
    """`mlc-graph persist`: store each (name, text) in the table and Redis; returns (hash, name) pairs."""
    redis = connect(settings.redis_url, 2.0, decode_responses=False) if settings.redis_url else None
    done: list[tuple[str, str | None]] = []
    try:
        for name, text in documents:
            sha256 = document_hash(text)
            await conn.execute(INSERT_PERSISTED_DOCUMENT, sha256, text, name)
            if redis is not None:
                await RedisStore(redis, settings.redis_prefix + "trusted:", ttl_seconds=None).put(
                    sha256, text
                )
            done.append((sha256, name))
    finally:
        if redis is not None:
            await redis.aclose()
    return done


async def persist_files(
    settings: Settings, files: Iterable[tuple[str, str]]
) -> list[tuple[str, str | None, str]]:
    """Register every document of each (path, text); (hash, operation names, path) per document."""
    conn = await asyncpg.connect(settings.direct_url)
    registered: list[tuple[str, str | None, str]] = []
    try:
        for path, text in files:
            done = await register(settings, documents_of(text), conn)
            registered.extend((sha256, name, path) for sha256, name in done)
    finally:
        await conn.close()
    return registered
