"""GraphiQL served from the package: the page and its pinned assets (React, ReactDOM, GraphiQL; see
``assets/VERSIONS``, refreshed by ``refresh-assets.sh``) come from ``/graphiql-assets/``, so the IDE works
without internet access — strawberry's own page loads them from a CDN."""

from functools import cache
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ASSETS_PATH = "/graphiql-assets"


@cache
def page_html() -> str:
    return (Path(__file__).resolve().parent / "graphiql.html").read_text(encoding="utf-8").replace(
        "{{ASSETS}}", ASSETS_PATH
    )
