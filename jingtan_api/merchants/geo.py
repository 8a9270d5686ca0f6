"""Near me: merchants (and their offers) within a radius of a point, nearest first (no GraphQL here).

No PostGIS and no SQLite extension: the database narrows the candidates with a bounding box on the
indexed ``merchant (latitude, longitude)`` columns (one range scan on either backend), and the exact
great-circle distance (haversine, mean Earth radius 6 371 008.8 m) is computed here for those candidates,
which are then filtered to the radius and sorted by (distance in whole metres, id). The list is cut into
pages with the same keyset cursors as every connection (the key is ``(metres, id)``), in memory: one
statement per page, and the total count comes with it. A radius is at most ``merchants.near_max_radius_km``
(50 km by default) and a search that would read more than ``MAX_CANDIDATES`` rows is refused
(NEAR_TOO_BROAD: ask for a smaller radius), so the work per request is bounded.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import Key, Page, PageArgs
from jingtan_api.errors import ValidationFailed
from jingtan_api.merchants.models import Merchant

M = Merchant.__table__

EARTH_RADIUS_M = 6_371_008.8
MAX_CANDIDATES = 5000


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    radius_m: int

    def box(self) -> tuple[float, float, float, float]:
        """(min lat, max lat, min lng, max lng) enclosing the circle. Near a pole (the circle reaches it)
        or across the ±180° meridian the box takes every longitude: wider than needed, never too narrow
        (the exact distance filters afterwards)."""
        dlat = math.degrees(self.radius_m / EARTH_RADIUS_M)
        lo_lat, hi_lat = self.latitude - dlat, self.latitude + dlat
        if lo_lat <= -90 or hi_lat >= 90:
            return max(-90.0, lo_lat), min(90.0, hi_lat), -180.0, 180.0
        cos_lat = math.cos(math.radians(max(abs(lo_lat), abs(hi_lat))))
        dlng = math.degrees(self.radius_m / (EARTH_RADIUS_M * cos_lat))
        lo_lng, hi_lng = self.longitude - dlng, self.longitude + dlng
        if lo_lng < -180 or hi_lng > 180:
            return lo_lat, hi_lat, -180.0, 180.0
        return lo_lat, hi_lat, lo_lng, hi_lng


def validate_near(latitude: Any, longitude: Any, radius_m: Any, *, max_radius_km: float) -> Near:
    for name, value, bound in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or abs(value) > bound:
            raise ValidationFailed(f"{name} must be between -{bound} and {bound} / 坐标超出范围",
                                   code="INVALID_COORDINATES", field=f"near.{name}")
    max_m = int(max_radius_km * 1000)
    if isinstance(radius_m, bool) or not isinstance(radius_m, int) or not 1 <= radius_m <= max_m:
        raise ValidationFailed(f"radiusMeters must be 1-{max_m} / 搜索半径须在 1 到 {max_m} 米之间",
                               code="INVALID_RADIUS", field="near.radiusMeters")
    return Near(float(latitude), float(longitude), radius_m)


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def in_box(stmt: Select[Any], near: Near) -> Select[Any]:
    """``stmt`` (which selects from ``merchant``) limited to the bounding box of the circle."""
    lo_lat, hi_lat, lo_lng, hi_lng = near.box()
    return stmt.where(M.c.latitude.between(lo_lat, hi_lat), M.c.longitude.between(lo_lng, hi_lng))


def page_in_memory(items: Sequence[tuple[Key, dict]], args: PageArgs) -> Page:
    """A keyset page of ``items`` (``(key, row)`` sorted by key ascending) — the in-memory twin of
    ``db.keyset_page`` with the same semantics of first/after/last/before."""
    keys = [k for k, _ in items]
    lo, hi = 0, len(items)
    if args.after is not None:
        lo = next((i for i, k in enumerate(keys) if k > args.after), len(items))
    if args.before is not None:
        hi = next((i for i, k in enumerate(keys) if k >= args.before), len(items))
    window = items[lo:max(lo, hi)]
    if args.backward:
        size = args.last or 0
        chosen = window[max(0, len(window) - size):] if size else []
        return Page(rows=[r for _, r in chosen], keys=[k for k, _ in chosen],
                    has_next=args.before is not None, has_previous=len(window) > size)
    size = args.first or 0
    chosen = window[:size]
    return Page(rows=[r for _, r in chosen], keys=[k for k, _ in chosen],
                has_next=len(window) > size, has_previous=args.after is not None)


@dataclass(frozen=True)
class NearPage:
    page: Page
    total: int


async def nearest(conn: AsyncConnection, stmt: Select[Any], near: Near, args: PageArgs,
                  key_id: Callable[[dict], int]) -> NearPage:
    """Run ``stmt`` (selecting ``merchant.latitude``/``longitude`` among its columns) in the bounding box,
    keep the rows within the radius, sort them by (metres, id) and cut the page. Each row gains
    ``distance_m``."""
    rows = (await conn.execute(in_box(stmt, near).limit(MAX_CANDIDATES + 1))).all()
    if len(rows) > MAX_CANDIDATES:
        raise ValidationFailed("Too many places in this area; use a smaller radius / 范围内地点过多，请缩小搜索半径",
                               code="NEAR_TOO_BROAD", field="near.radiusMeters")
    items: list[tuple[Key, dict]] = []
    for r in rows:
        row = dict(r._mapping)
        d = haversine_m(near.latitude, near.longitude, row["latitude"], row["longitude"])
        if d <= near.radius_m:
            row["distance_m"] = int(round(d))
            items.append(((row["distance_m"], key_id(row)), row))
    items.sort(key=lambda item: item[0])
    return NearPage(page_in_memory(items, args), len(items))


async def merchants_near(conn: AsyncConnection, near: Near, args: PageArgs, *, category: str | None,
                         status: str = "ACTIVE") -> NearPage:
    stmt = select(M).where(M.c.status == status)
    if category:
        stmt = stmt.where(M.c.category == category)
    return await nearest(conn, stmt, near, args, key_id=lambda row: row["id"])
