"""Per-request DataLoaders of the redemptions domain (one SQL statement per batch, whatever the page size)."""

from strawberry.types import Info

from jingtan_api.redemptions import service


def _loader(info: Info, name: str, fn):
    ctx = info.context
    return ctx.loader(name, lambda keys: ctx.read(fn, keys))


def redemptions(info: Info):
    return _loader(info, "redemptions", service.redemptions_by_ids)


def merchant_stats(info: Info):
    return _loader(info, "merchant_stats", service.merchant_stats)


def offer_redeemed(info: Info):
    return _loader(info, "offer_redeemed", service.offer_redeemed_counts)
