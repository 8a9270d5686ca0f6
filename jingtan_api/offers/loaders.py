"""Per-request DataLoaders of the offers domain (one SQL statement per batch, whatever the page size)."""

from strawberry.types import Info

from jingtan_api.offers import service


def offers(info: Info):
    ctx = info.context
    return ctx.loader("offers", lambda keys: ctx.read(service.offers_by_ids, keys))
