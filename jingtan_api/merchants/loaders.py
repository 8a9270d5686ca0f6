"""Per-request DataLoaders of the merchants domain (one SQL statement per batch, whatever the page size)."""

from strawberry.types import Info

from jingtan_api.merchants import service


def _loader(info: Info, name: str, fn):
    ctx = info.context
    return ctx.loader(name, lambda keys: ctx.read(fn, keys))


def merchants(info: Info):
    return _loader(info, "merchants", service.merchants_by_ids)


def staff_merchant(info: Info):
    """user id -> id of the merchant the user works for (None when not staff)."""
    return _loader(info, "staff_merchant", service.staff_merchant_ids)


def merchant_balances(info: Info):
    return _loader(info, "merchant_balances", service.merchant_balances)


def forget(loader, key) -> None:
    """Drop a cached key (strawberry's ``clear`` raises KeyError when the key was never loaded)."""
    try:
        loader.clear(key)
    except KeyError:
        pass
