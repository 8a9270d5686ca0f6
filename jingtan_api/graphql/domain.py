"""What one domain contributes to the GraphQL schema (collected by ``jingtan_api.graphql.assemble``).

A domain package (``jingtan_api/<domain>/schema.py``) implements the ``jingtan_register_domain`` hook and
returns a :class:`Domain`. Fields it adds to a type another domain owns (``User``, ``Merchant``,
``Account``) are strawberry fragments: plain ``@strawberry.type`` classes whose resolvers receive the
shared type's object as ``self``. The shared type never imports the domains that extend it.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from strawberry.types import Info

from jingtan_api.plugins.api import PROJECT_NAME

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# ``node(id:)`` lookup of one GraphQL type: (info, primary keys) -> {pk: object the viewer may see}.
NodeLookup = Callable[[Info, list[int]], Awaitable[Mapping[int, Any]]]


@dataclass(frozen=True)
class Domain:
    """One domain's part of the schema.

    * ``query`` / ``mutation`` / ``subscription``: fragments whose fields become fields of ``Query`` /
      ``Mutation`` / ``Subscription`` (subscription resolvers are async generators that wait with
      ``jingtan_api.live.transport.events``);
    * ``types``: types to include even when no field reaches them (``Node`` implementations);
    * ``nodes``: ``node(id:)`` lookups by GraphQL type name;
    * ``extends``: fragments whose fields are added to a shared type, by its GraphQL name
      (``{"User": (UserAccountFields,)}``).
    """

    name: str
    query: Sequence[type] = ()
    mutation: Sequence[type] = ()
    subscription: Sequence[type] = ()
    types: Sequence[type] = ()
    nodes: Mapping[str, NodeLookup] = field(default_factory=dict)
    extends: Mapping[str, Sequence[type]] = field(default_factory=dict)
