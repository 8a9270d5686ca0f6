"""Plugin discovery and loading: one :class:`PluginHost` (one pluggy ``PluginManager``) per app.

Startup rules (docs/architecture.md, section "Plugins"): enabled plugins are loaded by entry-point name
from the group ``jingtan.plugins`` (disabled ones are never imported); any problem stops startup with ONE
line naming the plugin (:class:`jingtan_api.settings.ConfigurationError`), including a hook implementation
that matches no hook specification (a misspelled hook name would otherwise be ignored silently).
"""

import difflib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

import pluggy
from pydantic import ValidationError

from jingtan_api.identity import senders as builtin_senders
from jingtan_api.plugins import hookspecs
from jingtan_api.plugins.api import (
    ENTRY_POINT_GROUP,
    PLUGIN_API_VERSION,
    PROJECT_NAME,
    ActionSettings,
    ActionType,
    Caps,
    Channel,
    MessageSender,
    Methodology,
)
from jingtan_api.settings import ConfigurationError, Settings

log = logging.getLogger("jingtan.plugins")

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


def camel(code: str) -> str:
    head, *rest = code.split("_")
    return head + "".join(p.capitalize() for p in rest)


def pascal(code: str) -> str:
    return "".join(p.capitalize() for p in code.split("_"))


def discover_entry_points(group: str = ENTRY_POINT_GROUP) -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the group by name (not loaded). Tests monkeypatch this function."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def _version_ok(wanted: str) -> bool:
    try:
        w_major, w_minor = (int(x) for x in wanted.split(".")[:2])
        h_major, h_minor = (int(x) for x in PLUGIN_API_VERSION.split(".")[:2])
    except ValueError:
        return False
    return w_major == h_major and w_minor <= h_minor


@dataclass
class LoadedActionType:
    """An enabled action type with its validated settings and where it came from."""

    plugin: str
    distribution_version: str
    action_type: ActionType[Any, Any]
    settings: ActionSettings
    methodology: Methodology
    caps: Caps

    @property
    def code(self) -> str:
        return self.action_type.code

    @property
    def field_name(self) -> str:
        return camel(self.code)

    @property
    def input_type_name(self) -> str:
        return self.action_type.graphql_input_name or f"{pascal(self.code)}ActionInput"


class PluginHost:
    """The plugins of one app: its pluggy manager and the enabled action types by code."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.action_types: dict[str, LoadedActionType] = {}
        # Message senders by name (``jingtan_register_message_senders``), the core's built-ins included.
        self.message_senders: dict[str, MessageSender] = {}
        self.sender_plugins: dict[str, str] = {}

    def get(self, code: str) -> LoadedActionType | None:
        return self.action_types.get(code)

    # --- loading ---------------------------------------------------------------------------------

    def register(self, name: str, plugin: object, settings: Settings, *, dist_version: str = "") -> None:
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise ConfigurationError(f"plugin {name!r}: invalid hook implementation: {_one_line(exc)}") from None
        self._check_hooks_known(name, plugin)
        impls = [i for i in self.pm.hook.jingtan_register_action_types.get_hookimpls() if i.plugin_name == name]
        for impl in impls:
            try:
                result = impl.function()
                if result is not None and not isinstance(result, Iterable):
                    raise TypeError(f"returned {type(result).__name__}, not a list of ActionType")
                types = list(result or [])
            except Exception as exc:  # noqa: BLE001 - a plugin's bug stops startup with its name
                raise ConfigurationError(
                    f"plugin {name!r}: jingtan_register_action_types failed: {type(exc).__name__}: {_one_line(exc)}"
                ) from None
            for action_type in types:
                self._add(name, action_type, settings, dist_version)
        self._add_senders(name, settings)

    def _add_senders(self, name: str, settings: Settings) -> None:
        """Collect the message senders of the plugin just registered (``jingtan_register_message_senders``)."""
        impls = [i for i in self.pm.hook.jingtan_register_message_senders.get_hookimpls() if i.plugin_name == name]
        for impl in impls:
            try:
                args = {"settings": settings}
                result = impl.function(*[args[a] for a in impl.argnames])
                if result is not None and not isinstance(result, Iterable):
                    raise TypeError(f"returned {type(result).__name__}, not a list of message senders")
                senders = list(result or [])
            except Exception as exc:  # noqa: BLE001 - a plugin's bug stops startup with its name
                raise ConfigurationError(
                    f"plugin {name!r}: jingtan_register_message_senders failed: {type(exc).__name__}: {_one_line(exc)}"
                ) from None
            for sender in senders:
                self._add_sender(name, sender)

    def _add_sender(self, plugin: str, sender: object) -> None:
        sender_name = getattr(sender, "name", None)
        if not isinstance(sender_name, str) or not CODE_RE.match(sender_name):
            raise ConfigurationError(f"plugin {plugin!r}: message sender name {sender_name!r} is not snake_case (2-40 chars)")
        send = getattr(sender, "send", None)
        if not callable(send) or not inspect.iscoroutinefunction(send):
            raise ConfigurationError(f"plugin {plugin!r}: message sender {sender_name!r} has no async send(message)")
        channels = getattr(sender, "channels", None)
        if not isinstance(channels, frozenset | set) or not channels or not all(isinstance(c, Channel) for c in channels):
            raise ConfigurationError(
                f"plugin {plugin!r}: message sender {sender_name!r}: channels must be a non-empty set of Channel"
            )
        wanted = getattr(sender, "plugin_api_version", "")
        if not _version_ok(str(wanted)):
            raise ConfigurationError(
                f"plugin {plugin!r}: message sender {sender_name!r} needs plugin API {wanted}, "
                f"this server provides {PLUGIN_API_VERSION}"
            )
        if sender_name in self.message_senders:
            raise ConfigurationError(
                f"plugin {plugin!r}: message sender {sender_name!r} is already provided by "
                f"{self.sender_plugins[sender_name]!r}"
            )
        self.message_senders[sender_name] = sender  # type: ignore[assignment]
        self.sender_plugins[sender_name] = plugin

    def sender_for(self, channel: Channel, settings: Settings) -> MessageSender:
        """The sender ``[identity] sms_sender`` / ``email_sender`` selects for ``channel``."""
        name = settings.identity.sms_sender if channel == Channel.SMS else settings.identity.email_sender
        return self.message_senders[name]

    def _check_hooks_known(self, name: str, plugin: object) -> None:
        """``pm.check_pending()``: every hook implementation of the plugin just registered must match a
        hook specification (plugins registered before it passed the same check)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            culprit = self.pm.get_name(exc.plugin) or name
            unknown = sorted(c.name for c in self.pm.get_hookcallers(exc.plugin) or () if not c.has_spec())
            known = sorted(n for n, c in vars(self.pm.hook).items() if not n.startswith("_") and c.has_spec())
            what = f"unknown hook {', '.join(map(repr, unknown))}" if unknown else _one_line(exc)
            raise ConfigurationError(
                f"plugin {culprit!r}: {what} (no such hook specification; this server provides {', '.join(known)})"
            ) from None

    def _add(self, plugin: str, action_type: object, settings: Settings, dist_version: str) -> None:
        if not isinstance(action_type, ActionType):
            raise ConfigurationError(f"plugin {plugin!r}: returned {action_type!r}, not an ActionType")
        code = getattr(action_type, "code", None)
        if not isinstance(code, str) or not CODE_RE.match(code):
            raise ConfigurationError(f"plugin {plugin!r}: action type code {code!r} is not snake_case (2-40 chars)")
        for attr in ("Input", "Settings"):
            model = getattr(action_type, attr, None)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigurationError(
                    f"plugin {plugin!r}: action type {code!r} has no pydantic {attr} model "
                    f"(give it as a type argument: ActionType[MyInput, MySettings])"
                )
        wanted = getattr(action_type, "plugin_api_version", "")
        if not _version_ok(str(wanted)):
            raise ConfigurationError(
                f"plugin {plugin!r}: needs plugin API {wanted}, this server provides {PLUGIN_API_VERSION}"
            )
        if code in self.action_types:
            raise ConfigurationError(
                f"plugin {plugin!r}: action type code {code!r} is already provided by plugin "
                f"{self.action_types[code].plugin!r}"
            )
        raw = settings.plugins.settings_for(code)
        try:
            plugin_settings = action_type.Settings.model_validate(raw)
            action_type.validate_settings(plugin_settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or code}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(f"plugin {plugin!r}: invalid settings [plugins.{code}]: {problems}") from None
        except ValueError as exc:
            raise ConfigurationError(f"plugin {plugin!r}: invalid settings [plugins.{code}]: {_one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a plugin's bug stops startup with its name
            raise ConfigurationError(
                f"plugin {plugin!r}: checking settings [plugins.{code}] failed: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        try:
            methodology = action_type.methodology(plugin_settings)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug stops startup with its name
            raise ConfigurationError(
                f"plugin {plugin!r}: methodology of {code!r} failed: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        try:
            caps = action_type.caps(plugin_settings)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug stops startup with its name
            raise ConfigurationError(
                f"plugin {plugin!r}: caps of {code!r} failed: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        if not isinstance(methodology, Methodology) or not isinstance(caps, Caps):
            raise ConfigurationError(
                f"plugin {plugin!r}: {code!r} returned {type(methodology).__name__} and {type(caps).__name__} "
                "from methodology() and caps(), not Methodology and Caps"
            )
        loaded = LoadedActionType(
            plugin=plugin,
            distribution_version=dist_version,
            action_type=action_type,
            settings=plugin_settings,
            methodology=methodology,
            caps=caps,
        )
        for other in self.action_types.values():
            if other.field_name == loaded.field_name:
                raise ConfigurationError(
                    f"plugin {plugin!r}: input field {loaded.field_name!r} collides with plugin {other.plugin!r}"
                )
        self.action_types[code] = loaded


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _check_tables(
    host: PluginHost, settings: Settings, available: dict[str, importlib.metadata.EntryPoint] | None = None
) -> None:
    """Every ``[plugins.<code>]`` table (every key of ``[plugins]`` besides its own settings) is checked. A
    table of an enabled action type was validated when it loaded. A table of an installed but disabled
    plugin (an entry point of that name, ``available``) is validated too — the plugin is imported for that
    only, its settings must be valid (else startup stops) and a warning says they are unused. Any other
    table is a misspelled code and stops startup, naming the closest code."""
    enabled = set(settings.plugins.enabled)
    for key in sorted(settings.plugins.model_extra or {}):
        if key in host.action_types:
            continue
        ep = (available or {}).get(key)
        if ep is not None and key not in enabled:
            _check_disabled_table(key, ep, settings)
            continue
        provided = sorted(host.action_types)
        close = difflib.get_close_matches(key, provided, n=1)
        hint = f"; did you mean [plugins.{close[0]}]?" if close else ""
        raise ConfigurationError(
            f"[plugins.{key}]: no enabled plugin provides an action type {key!r} "
            f"(enabled action types: {', '.join(provided) or 'none'}){hint}"
        )


def _check_senders(host: PluginHost, settings: Settings) -> None:
    """``[identity] sms_sender`` and ``email_sender`` must name a registered sender of that channel."""
    for key, channel in (("sms_sender", Channel.SMS), ("email_sender", Channel.EMAIL)):
        wanted = getattr(settings.identity, key)
        sender = host.message_senders.get(wanted)
        if sender is None:
            raise ConfigurationError(
                f"[identity] {key} = {wanted!r}: no such message sender "
                f"(registered: {', '.join(sorted(host.message_senders)) or 'none'})"
            )
        if channel not in sender.channels:
            raise ConfigurationError(f"[identity] {key} = {wanted!r}: this sender cannot deliver {channel.value}")
def _check_disabled_table(name: str, ep: importlib.metadata.EntryPoint, settings: Settings) -> None:
    """Validate the table of a disabled plugin in a scratch host (nothing of it reaches the app)."""
    try:
        plugin = ep.load()
    except Exception as exc:  # noqa: BLE001 - one clear line naming the plugin
        raise ConfigurationError(
            f"[plugins.{name}]: plugin {name!r} is disabled and failed to import, so its settings cannot be "
            f"checked: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    scratch = PluginHost()
    try:
        scratch.register(name, plugin, settings)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (plugin {name!r} is disabled, but its [plugins.{name}] table is checked)") from None
    if name not in scratch.action_types:
        raise ConfigurationError(
            f"[plugins.{name}]: the disabled plugin {name!r} provides no action type {name!r} "
            f"(it provides: {', '.join(sorted(scratch.action_types)) or 'none'})"
        )
    log.warning(
        f"[plugins.{name}] is valid but unused: plugin {name!r} is installed and not enabled "
        f"(add it to [plugins] enabled to use it, or remove the table)",
        extra={"plugin": name},
    )


def load_plugins(settings: Settings, plugins: Iterable[object] | None = None) -> PluginHost:
    """Load the enabled plugins (or exactly ``plugins`` when given: a list of plugin objects/modules, or
    of ``(name, plugin)`` pairs — then ``[plugins] enabled`` is ignored). Raises ConfigurationError.
    The core's built-in message senders are registered first, through the same hook."""
    host = PluginHost()
    host.register("jingtan-builtin-senders", builtin_senders, settings)
    if plugins is not None:
        for item in plugins:
            name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
            host.register(name, plugin, settings)
        _check_tables(host, settings)
        _check_senders(host, settings)
        return host
    enabled = settings.plugins.enabled
    twice = sorted({name for name in enabled if enabled.count(name) > 1})
    if twice:
        raise ConfigurationError(f"[plugins] enabled lists {', '.join(map(repr, twice))} more than once")
    available = discover_entry_points()
    for name in enabled:
        ep = available.get(name)
        if ep is None:
            raise ConfigurationError(
                f"plugin {name!r} is enabled but not installed (no entry point {name!r} in group {ENTRY_POINT_GROUP!r})"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - one clear line naming the plugin
            raise ConfigurationError(f"plugin {name!r} failed to import: {type(exc).__name__}: {_one_line(exc)}") from None
        dist = getattr(ep, "dist", None)
        host.register(name, plugin, settings, dist_version=getattr(dist, "version", "") or "")
    _check_tables(host, settings, available)
    _check_senders(host, settings)
    log.info("plugins loaded", extra={"action_types": sorted(host.action_types)})
    return host
