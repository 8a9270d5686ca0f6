"""The directive count behind the directive limit is computed once per parsed document (the parser cache
returns the same DocumentNode for the same text), and a different document is counted afresh."""

from graphql import parse

from jingtan_api.graphql import directives


def test_counts_are_cached_per_document_object(monkeypatch):
    walks = []
    real = directives.directive_counts
    monkeypatch.setattr(directives, "directive_counts", lambda doc: walks.append(doc) or real(doc))
    few = parse("{ a @skip(if: false) b }")
    many = parse("{ a @x @y @z b @x }")
    assert directives.cached_directive_counts(few) == (1, 1)
    assert directives.cached_directive_counts(few) == (1, 1)
    assert directives.cached_directive_counts(many) == (4, 3)
    assert directives.cached_directive_counts(parse("{ a @skip(if: false) b }")) == (1, 1)  # new object: walked
    assert len(walks) == 3
