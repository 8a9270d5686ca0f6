"""The plugin host (DESIGN.md §3): hook specifications, the public plugin API, discovery and loading.

Plugins import only :mod:`jingtan_api.plugins.api`.
"""
