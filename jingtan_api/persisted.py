"""Persisted operations: automatic persisted queries (Apollo's protocol) and an allow-list.

* A request names a document by its SHA-256 (lowercase hex of the UTF-8 text, exactly as sent):
  ``extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}`` (Apollo) or
  ``documentId = "sha256:<hex>"`` (the GraphQL-over-HTTP persisted-documents proposal).
* **Registered operations** come from the manifest that ``jingtan operations register`` writes from
  ``schema/operations/`` (a JSON file, ``graphql.persisted_operations_file``). A file rather than a table:
  the documents are part of a release — reviewed in git with the frontend's code, identical on every
  worker and instance without a database read, and checked against the schema when they are registered;
  re-registering keeps old entries (older app versions in the field keep working) unless ``--prune``.
* **Automatic persisted queries** (``graphql.automatic_persisted_queries``, on by default, off with the
  allow-list): a hash the server does not know answers ``PERSISTED_QUERY_NOT_FOUND``; the client then
  sends hash and query, the hash is checked (``PERSISTED_QUERY_HASH_MISMATCH`` when it differs) and the
  document is remembered in a bounded in-process LRU (``graphql.apq_cache_size``). Per process on
  purpose: a worker that has not seen a hash answers NOT_FOUND and the client resends the query, which is
  the protocol's normal path, so no shared store is needed and anonymous clients cannot fill one.
* **Allow-list** (``graphql.allow_list``): only registered operations run, and only by hash or id; a
  request carrying a document is refused with ``OPERATION_NOT_ALLOWED`` before it is parsed.
"""

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import GraphQLSchema, parse, validate
from graphql.error import GraphQLSyntaxError

from jingtan_api.settings import ConfigurationError

MANIFEST_FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


def document_hash(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


class PersistedQueryError(Exception):
    """A request refused before execution; answered as a GraphQL error with ``extensions.code``."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def formatted(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": {"code": self.code}}


def not_found() -> PersistedQueryError:
    # Apollo's clients retry with the full query on this code (older ones on the message's first word).
    return PersistedQueryError(
        "PersistedQueryNotFound: send the query with its hash / 未找到该持久化查询，请连同查询文本重新发送",
        code="PERSISTED_QUERY_NOT_FOUND",
    )


def _invalid(detail: str) -> PersistedQueryError:
    return PersistedQueryError(
        f"Invalid persisted query: {detail} / 持久化查询参数无效", code="PERSISTED_QUERY_INVALID"
    )


def requested_hash(extensions: dict[str, Any] | None, document_id: Any) -> str | None:
    """The SHA-256 a request names, or None; PERSISTED_QUERY_INVALID when it is malformed."""
    found: str | None = None
    if document_id is not None:
        if not isinstance(document_id, str) or not document_id.startswith("sha256:"):
            raise _invalid('documentId must be "sha256:<64 hex digits>"')
        found = document_id.removeprefix("sha256:")
        if not _HEX64.fullmatch(found):
            raise _invalid('documentId must be "sha256:<64 hex digits>"')
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is not None:
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise _invalid("extensions.persistedQuery.version must be 1")
        value = persisted.get("sha256Hash")
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise _invalid("extensions.persistedQuery.sha256Hash must be 64 lowercase hex digits")
        if found is not None and found != value:
            raise _invalid("documentId and extensions.persistedQuery name different documents")
        found = value
    return found


@dataclass(frozen=True)
class RegisteredOperation:
    name: str | None
    path: str
    document: str


class PersistedOperations:
    """Resolves a request's document from its hash; one per app."""

    def __init__(
        self,
        registered: dict[str, RegisteredOperation] | None = None,
        *,
        allow_list: bool = False,
        automatic: bool = True,
        cache_size: int = 1000,
    ) -> None:
        self.registered = dict(registered or {})
        self.allow_list = allow_list
        self.automatic = automatic and not allow_list
        self.cache_size = cache_size
        self._cache: OrderedDict[str, str] = OrderedDict()

    def resolve(self, query: str | None, extensions: dict[str, Any] | None, document_id: Any = None) -> str | None:
        """The document to execute for this request (``query`` when it names none)."""
        digest = requested_hash(extensions, document_id)
        if self.allow_list and query is not None:
            raise PersistedQueryError(
                "Only registered operations run here: send the operation's hash (extensions.persistedQuery or "
                "documentId), not its text / 仅允许已登记的操作：请只发送操作的哈希",
                code="OPERATION_NOT_ALLOWED",
            )
        if digest is None:
            if self.allow_list:
                raise PersistedQueryError(
                    "Only registered operations run here: name one by its hash / 仅允许已登记的操作",
                    code="OPERATION_NOT_ALLOWED",
                )
            return query
        if query is None:
            operation = self.registered.get(digest)
            if operation is not None:
                return operation.document
            cached = self._cache.get(digest) if self.automatic else None
            if cached is None:
                raise not_found()
            self._cache.move_to_end(digest)
            return cached
        if document_hash(query) != digest:
            raise PersistedQueryError(
                "The query's SHA-256 does not match sha256Hash / 查询文本与哈希不一致",
                code="PERSISTED_QUERY_HASH_MISMATCH",
            )
        if self.automatic and digest not in self.registered:
            self._cache[digest] = query
            self._cache.move_to_end(digest)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return query


# --- the manifest ---------------------------------------------------------------------------------------


def load_manifest(path: str | Path) -> dict[str, RegisteredOperation]:
    """hash -> operation; ConfigurationError (one line) when the file is missing or damaged."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(
            f"graphql.persisted_operations_file: {path} does not exist (run `jingtan operations register`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"graphql.persisted_operations_file: cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or not isinstance(raw.get("operations"), dict):
        raise ConfigurationError(f"graphql.persisted_operations_file: {path} is not a manifest of format {MANIFEST_FORMAT}")
    operations: dict[str, RegisteredOperation] = {}
    for digest, entry in raw["operations"].items():
        document = entry.get("document") if isinstance(entry, dict) else None
        if not isinstance(document, str) or document_hash(document) != digest:
            raise ConfigurationError(
                f"graphql.persisted_operations_file: {path}: the entry {digest[:12]}… does not match its hash"
            )
        operations[digest] = RegisteredOperation(entry.get("name"), str(entry.get("path", "")), document)
    return operations


def operation_name(document: str) -> str | None:
    try:
        ast = parse(document)
    except GraphQLSyntaxError:
        return None
    names = [d.name.value for d in ast.definitions if d.kind == "operation_definition" and d.name]
    return names[0] if len(names) == 1 else None


def check_documents(schema: GraphQLSchema, files: Iterable[tuple[str, str]]) -> list[str]:
    """One line per problem (path: message) for documents that do not parse or validate."""
    problems = []
    for path, document in files:
        try:
            ast = parse(document)
        except GraphQLSyntaxError as exc:
            problems.append(f"{path}: {exc.message}")
            continue
        problems.extend(f"{path}: {error.message}" for error in validate(schema, ast))
    return problems


def read_operations(directory: str | Path) -> list[tuple[str, str]]:
    """(path relative to directory, text) of every ``*.graphql`` file, sorted."""
    root = Path(directory)
    return [(p.relative_to(root).as_posix(), p.read_text(encoding="utf-8")) for p in sorted(root.rglob("*.graphql"))]


def register(
    manifest_path: str | Path, files: list[tuple[str, str]], *, prune: bool = False, now: datetime | None = None
) -> tuple[int, int, int]:
    """Write the documents into the manifest (kept entries: earlier registrations unless ``prune``).
    Returns (registered now, new, removed)."""
    manifest_path = Path(manifest_path)
    existing: dict[str, Any] = {}
    if manifest_path.exists():
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))["operations"]
        existing = {
            digest: {"name": op.name, "path": op.path, "document": op.document,
                     "registeredAt": raw[digest].get("registeredAt")}
            for digest, op in load_manifest(manifest_path).items()
        }
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    current: dict[str, Any] = {}
    for path, document in files:
        digest = document_hash(document)
        previous = existing.get(digest)
        current[digest] = {
            "name": operation_name(document),
            "path": path,
            "document": document,
            "registeredAt": (previous or {}).get("registeredAt") or stamp,
        }
    new = sum(1 for digest in current if digest not in existing)
    kept = {} if prune else {d: e for d, e in existing.items() if d not in current}
    operations = dict(sorted({**kept, **current}.items(), key=lambda item: (item[1]["path"], item[0])))
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": MANIFEST_FORMAT, "operations": operations}, ensure_ascii=False, indent=2)
    manifest_path.write_text(text + "\n", encoding="utf-8")
    removed = len(existing) - len(kept) - (len(current) - new)
    return len(current), new, removed
