"""Hook specifications of the plugin host (pluggy project name ``jingtan``).

Hooks are sync and only *register* things; the core calls the returned objects' (async) methods itself
(docs/architecture.md, section "Plugins": a raising hook would abort a whole pluggy call, and async hooks
return coroutines). Every hook here is listed in docs/plugins.md and has a ``test_hook_<name>`` test
(``tests/test_hookspecs_documented.py`` checks both).
"""

from typing import TYPE_CHECKING, Any

import pluggy

from jingtan_api.plugins.api import PROJECT_NAME, ActionType, MessageSender

if TYPE_CHECKING:
    from jingtan_api.graphql.domain import Domain
    from jingtan_api.plugins.manager import PluginHost
    from jingtan_api.settings import Settings

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    """Return the action categories this plugin provides: a list of :class:`ActionType` instances.

    Called once at startup for enabled plugins only. Each code must be unique across plugins.
    Since plugin API 1.0.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this


@hookspec
def jingtan_register_domain(host: "PluginHost", reserved_type_names: frozenset[str]) -> "Domain | None":
    """Return what a domain adds to the GraphQL schema: a :class:`jingtan_api.graphql.domain.Domain`
    (Query and Mutation fields, types, ``node(id:)`` lookups, fields on shared types such as ``User``).

    The core's own domains (users, accounts, actions, merchants, ...) register through this hook, in
    the order of ``jingtan_api.graphql.assemble.CORE_DOMAINS``; ``host`` gives the enabled action types;
    ``reserved_type_names`` are the GraphQL type names of the core, which types built at startup (from
    plugins' input models) must not reuse. An implementation may take either argument or none.
    Core-internal in plugin API 1.x: the GraphQL types it returns are the core's, so it is not part of
    the stable plugin API (``jingtan_api.plugins.api``) and may change in a minor version.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this


@hookspec
def jingtan_register_message_senders(settings: "Settings") -> list[MessageSender]:
    """Return the message senders (SMS or email channels for one-time codes) this plugin provides: objects
    fitting the :class:`MessageSender` protocol, each with a unique ``name``.

    Called once at startup; ``settings`` are the server's settings (an implementation may omit the
    argument). ``[identity] sms_sender`` and ``email_sender`` choose the sender of each channel by name;
    the core's own ``development`` and ``http_gateway`` senders register through this hook too.
    Since plugin API 1.2.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this
