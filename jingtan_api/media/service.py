"""Images of merchants and offers: signed upload grants, verification, links (no GraphQL here).

Uploads take two steps (docs/merchants.md, "Images"): the ``requestImageUpload`` mutation checks that
the viewer manages the merchant (or the offer's merchant) and answers a short-lived signed URL; the client
POSTs the raw image bytes there (``/media/uploads/<grant>``). The grant (HMAC-SHA256 with a key derived
from ``secret_key``) names the owner, the slot, the user and the expiry, so the upload endpoint needs no
session and cannot be pointed at another merchant. The bytes are checked before anything is written:
size (``merchants.media_max_bytes``), type by content sniffing and full decoding with Pillow (PNG, JPEG
or WebP; the declared Content-Type is ignored), and pixel count. The image is stored under the SHA-256 of
its bytes and the slot's link replaced in one transaction; the served URL contains the hash, so it can be
cached forever (``Cache-Control: immutable``).
"""

import base64
import hashlib
import hmac
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import dialect_insert
from jingtan_api.errors import DomainError, Unauthenticated
from jingtan_api.media.models import MediaAsset, MediaLink
from jingtan_api.media.storage import Storage

MA = MediaAsset.__table__
ML = MediaLink.__table__

OWNER_TYPES = ("MERCHANT", "OFFER")
SLOTS = ("LOGO", "COVER")
FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
CONTENT_TYPES = {ext: ct for ct, ext in FORMATS.values()}


class BadImage(DomainError):
    code = "NOT_AN_IMAGE"


class ImageTooLarge(DomainError):
    code = "IMAGE_TOO_LARGE"


@dataclass(frozen=True)
class Grant:
    owner_type: str
    owner_id: int
    slot: str
    user_id: int
    expires_at: datetime


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"jingtan media upload v1", hashlib.sha256).digest()


def sign_grant(grant: Grant, secret: str) -> str:
    payload = json.dumps([grant.owner_type, grant.owner_id, grant.slot, grant.user_id,
                          int(grant.expires_at.timestamp())], separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()).decode().rstrip("=")
    return f"{body}.{sig}"


def read_grant(token: str, secret: str, *, now: datetime) -> Grant:
    invalid = Unauthenticated("This upload URL is invalid / 上传链接无效", reason="INVALID_UPLOAD_GRANT")
    body, _, sig = token.partition(".")
    expected = base64.urlsafe_b64encode(hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()).decode().rstrip("=")
    if not body or not hmac.compare_digest(sig.encode(), expected.encode()):
        raise invalid
    try:
        owner_type, owner_id, slot, user_id, expires = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        raise invalid from None
    expires_at = datetime.fromtimestamp(expires, tz=now.tzinfo)
    if expires_at <= now:
        raise Unauthenticated("This upload URL has expired; ask for a new one / 上传链接已过期", reason="UPLOAD_GRANT_EXPIRED")
    return Grant(owner_type, owner_id, slot, user_id, expires_at)


def new_grant(*, owner_type: str, owner_id: int, slot: str, user_id: int, now: datetime, ttl_seconds: int) -> Grant:
    if owner_type not in OWNER_TYPES or slot not in SLOTS:
        raise ValueError((owner_type, slot))
    return Grant(owner_type, owner_id, slot, user_id, now + timedelta(seconds=ttl_seconds))


@dataclass(frozen=True)
class CheckedImage:
    sha256: str
    content_type: str
    extension: str
    width: int
    height: int
    data: bytes

    @property
    def key(self) -> str:
        return f"{self.sha256}.{self.extension}"


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Size, then type by content (Pillow identifies and fully decodes it), then dimensions."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"An image may have at most {max_bytes} bytes / 图片不能超过 {max_bytes} 字节", field="file")
    if not data:
        raise BadImage("The upload is empty / 上传内容为空", field="file")
    bad = BadImage("The file is not a PNG, JPEG or WebP image / 文件不是 PNG、JPEG 或 WebP 图片", field="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt, (width, height) = probe.format, probe.size
                if fmt not in FORMATS:
                    raise bad
                if width * height > max_pixels:
                    raise ImageTooLarge(f"At most {max_pixels} pixels / 图片像素过多", field="file")
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # verify() checks structure only; decoding catches truncated data
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise bad from None
    content_type, ext = FORMATS[fmt]
    return CheckedImage(hashlib.sha256(data).hexdigest(), content_type, ext, width, height, data)


def store(storage: Storage, image: CheckedImage) -> None:
    """Write the bytes (idempotent: the key is the content hash). Done before the database link, so a
    crash in between leaves at worst an unreferenced file, never a link to nothing."""
    storage.put(image.key, image.data)


async def link_image(conn: AsyncConnection, *, grant: Grant, image: CheckedImage, now: datetime) -> int:
    asset = dialect_insert(conn, MA).values(
        sha256=image.sha256, content_type=image.content_type, extension=image.extension, width=image.width,
        height=image.height, size_bytes=len(image.data), uploaded_by_user_id=grant.user_id, created_at=now,
    ).on_conflict_do_nothing(index_elements=["sha256"])
    await conn.execute(asset)
    asset_id = (await conn.execute(select(MA.c.id).where(MA.c.sha256 == image.sha256))).scalar_one()
    link = dialect_insert(conn, ML).values(
        owner_type=grant.owner_type, owner_id=grant.owner_id, slot=grant.slot, asset_id=asset_id,
        updated_by_user_id=grant.user_id, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["owner_type", "owner_id", "slot"])
    if (await conn.execute(link)).rowcount != 1:
        await conn.execute(
            update(ML).where(ML.c.owner_type == grant.owner_type, ML.c.owner_id == grant.owner_id, ML.c.slot == grant.slot)
            .values(asset_id=asset_id, updated_by_user_id=grant.user_id, updated_at=now)
        )
    return asset_id


async def images_of(conn: AsyncConnection, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, dict]]:
    """{(owner_type, owner_id): {slot: asset row}} in one statement."""
    if not keys:
        return {}
    owner_ids = sorted({k[1] for k in keys})
    types = sorted({k[0] for k in keys})
    rows = await conn.execute(
        select(ML.c.owner_type, ML.c.owner_id, ML.c.slot, MA)
        .join(MA, MA.c.id == ML.c.asset_id)
        .where(ML.c.owner_type.in_(types), ML.c.owner_id.in_(owner_ids))
    )
    out: dict[tuple[str, int], dict[str, dict]] = {}
    wanted = set(keys)
    for r in rows:
        if (r.owner_type, r.owner_id) in wanted:
            out.setdefault((r.owner_type, r.owner_id), {})[r.slot] = dict(r._mapping)
    return out


def url_of(asset: dict) -> str:
    return f"/media/{asset['sha256']}.{asset['extension']}"
