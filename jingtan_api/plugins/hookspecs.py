"""Hook specifications of the plugin host (pluggy project name ``jingtan``).

Hooks are sync and only *register* things; the core calls the returned objects' (async) methods itself
(docs/architecture.md, section "Plugins": a raising hook would abort a whole pluggy call, and async hooks
return coroutines). Every hook here is listed in docs/plugins.md and has a ``test_hook_<name>`` test
(``tests/test_hookspecs_documented.py`` checks both).
"""

from typing import Any

import pluggy

from jingtan_api.plugins.api import PROJECT_NAME, ActionType

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    """Return the action categories this plugin provides: a list of :class:`ActionType` instances.

    Called once at startup for enabled plugins only. Each code must be unique across plugins.
    Since plugin API 1.0.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this
