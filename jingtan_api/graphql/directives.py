"""Directive limits: a document may carry at most ``max_directives_per_location`` directives on one node
and ``max_directives`` in all. Without them, ``{ __typename @aa@aa@aa… }`` makes validation report one
error per directive (graphql-cop's "directive overloading"): work and answer size grow with the input.

An over-limit document is refused with ONE validation error: the extension swaps the request's
validation rules for a single rule before validation runs (so it must come before ``ValidationCache``;
``assemble.DocumentChecks`` runs the two in that order in one extension).
"""

from collections.abc import Iterator

from graphql import DirectiveNode, DocumentNode, GraphQLError, Node, visit
from graphql.language import Visitor
from graphql.validation import ASTValidationRule, ValidationContext
from strawberry.extensions import SchemaExtension


def directive_counts(document: DocumentNode) -> tuple[int, int]:
    """(directives in the document, most directives on one node)."""
    total = most = 0

    class Count(Visitor):
        def enter(self, node: Node, *_args: object) -> None:
            nonlocal total, most
            directives = getattr(node, "directives", None)
            if directives and not isinstance(node, DirectiveNode):
                total += len(directives)
                most = max(most, len(directives))

    visit(document, Count())
    return total, most


_COUNTS: dict[int, tuple[DocumentNode, tuple[int, int]]] = {}
_COUNTS_MAX = 1000


def cached_directive_counts(document: DocumentNode) -> tuple[int, int]:
    """``directive_counts`` once per document object: the parser cache hands the same ``DocumentNode`` to
    every request with the same text, and walking it again cost ~0.45 ms per request (cProfile). The
    entry keeps the document alive, so its ``id`` cannot be reused by another while it is cached."""
    hit = _COUNTS.get(id(document))
    if hit is not None and hit[0] is document:
        return hit[1]
    counts = directive_counts(document)
    if len(_COUNTS) >= _COUNTS_MAX:
        _COUNTS.pop(next(iter(_COUNTS)))  # the oldest entry
    _COUNTS[id(document)] = (document, counts)
    return counts


def _refusal(message: str) -> type[ASTValidationRule]:
    class TooManyDirectives(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            context.report_error(GraphQLError(message, extensions={"code": "GRAPHQL_VALIDATION_FAILED"}))

    return TooManyDirectives


class DirectiveLimit(SchemaExtension):
    def __init__(self, *, max_directives: int, max_per_location: int) -> None:
        self.max_directives = max_directives
        self.max_per_location = max_per_location

    def check_directives(self) -> None:
        """Swap the request's validation rules for the one refusal when the document is over a limit."""
        document = self.execution_context.graphql_document
        if document is not None:
            total, most = cached_directive_counts(document)
            if total > self.max_directives or most > self.max_per_location:
                self.execution_context.validation_rules = (
                    _refusal(
                        f"Too many directives (at most {self.max_per_location} on one field and "
                        f"{self.max_directives} in all) / 指令过多"
                    ),
                )

    def on_validate(self) -> Iterator[None]:
        self.check_directives()
        yield
