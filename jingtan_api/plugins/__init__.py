"""The plugin host (docs/architecture.md, section "Plugins"): hook specifications, the public plugin API,
discovery and loading.

Plugins import only :mod:`jingtan_api.plugins.api`.
"""
