"""Logos and covers: the signed upload URL, content sniffing (Pillow), size limits, nothing written on a
refusal, content-addressed serving with cache headers."""

import io
import os

import pytest
from PIL import Image
from sqlalchemy import func, select

from jingtan_api.media.models import MediaAsset, MediaLink
from tests.offers_helpers import make_member, make_merchant, make_offer

REQUEST = """
mutation Upload($input: RequestImageUploadInput!) {
  requestImageUpload(input: $input) { uploadUrl expiresAt maxBytes userErrors { code field } errors { code } }
}
"""
BRAND = """
query Brand($id: ID!) { merchant(id: $id) { logo { url contentType width height sizeBytes } cover { url } } }
"""


@pytest.fixture
def settings_overrides(tmp_path):
    return {"merchants": {"media_dir": str(tmp_path / "media"), "media_max_bytes": 20_000}}


def png(size=(32, 16), color=(20, 160, 90), noise=False) -> bytes:
    img = Image.new("RGB", size, color)
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


async def _grant(gql, token, owner_id, slot="LOGO") -> dict:
    return (await gql.ok(REQUEST, {"input": {"ownerId": owner_id, "slot": slot}}, token=token))["requestImageUpload"]


async def _rows(services) -> tuple[int, int]:
    async with services.db.read() as conn:
        return ((await conn.execute(select(func.count()).select_from(MediaAsset.__table__))).scalar_one(),
                (await conn.execute(select(func.count()).select_from(MediaLink.__table__))).scalar_one())


def _files(settings) -> list[str]:
    root = settings.merchants.media_dir
    return [f for _, _, files in os.walk(root) for f in files] if os.path.isdir(root) else []


async def test_upload_a_logo_and_serve_it_with_cache_headers(gql, services, clock, admin, settings):
    shop = await make_merchant(gql, services, clock, admin)
    grant = await _grant(gql, shop["token"], shop["id"])
    assert grant["userErrors"] == [] and grant["uploadUrl"].startswith("/media/uploads/") and grant["maxBytes"] == 20_000
    data = png()
    r = await gql.http.post(grant["uploadUrl"], content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    image = r.json()["image"]
    assert image["contentType"] == "image/png" and (image["width"], image["height"]) == (32, 16)
    brand = (await gql.ok(BRAND, {"id": shop["id"]}))["merchant"]
    assert brand["logo"] == {"url": image["url"], "contentType": "image/png", "width": 32, "height": 16, "sizeBytes": len(data)}
    assert brand["cover"] is None and image["sha256"] in image["url"]
    served = await gql.http.get(image["url"])
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == "image/png"
    assert "immutable" in served.headers["cache-control"] and "max-age=31536000" in served.headers["cache-control"]
    again = await gql.http.get(image["url"], headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304
    # replacing the logo (a JPEG this time) relinks the slot; the old file stays (its URL never changes)
    r = await gql.http.post((await _grant(gql, shop["token"], shop["id"]))["uploadUrl"], content=jpeg())
    assert r.status_code == 201 and r.json()["image"]["contentType"] == "image/jpeg"
    assert await _rows(services) == (2, 1)
    assert (await gql.http.get("/media/" + "0" * 64 + ".png")).status_code == 404


async def test_offer_cover_by_the_merchants_staff_only(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    other = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop)
    assert (await _grant(gql, other["token"], offer["id"], "COVER"))["errors"] == [{"code": "FORBIDDEN"}]
    member = await make_member(services, clock)
    assert (await _grant(gql, member["token"], shop["id"]))["errors"] == [{"code": "FORBIDDEN"}]
    assert (await _grant(gql, shop["token"], "VXNlcjox"))["errors"] == [{"code": "NOT_FOUND"}]  # a User id
    grant = await _grant(gql, shop["token"], offer["id"], "COVER")
    r = await gql.http.post(grant["uploadUrl"], content=png())
    assert r.status_code == 201
    cover = await gql.ok("query($id: ID!) { offer(id: $id) { cover { url } logo { url } } }", {"id": offer["id"]})
    assert cover["offer"]["cover"]["url"] == r.json()["image"]["url"] and cover["offer"]["logo"] is None


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"hello, I am not an image", 415, "NOT_AN_IMAGE"),
    (b"", 415, "NOT_AN_IMAGE"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 415, "NOT_AN_IMAGE"),
    (png()[:60], 415, "NOT_AN_IMAGE"),  # a truncated PNG: the header alone does not pass
    (b"GIF89a" + b"\x00" * 100, 415, "NOT_AN_IMAGE"),
    ("big", 413, "IMAGE_TOO_LARGE"),
])
async def test_refused_uploads_write_nothing(gql, services, clock, admin, settings, body, status, code):
    shop = await make_merchant(gql, services, clock, admin)
    if body == "big":
        body = png((128, 128), noise=True)
        assert len(body) > 20_000
    grant = await _grant(gql, shop["token"], shop["id"])
    r = await gql.http.post(grant["uploadUrl"], content=body, headers={"Content-Type": "image/png"})
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == code
    assert await _rows(services) == (0, 0) and _files(settings) == []


async def test_tampered_or_expired_grants_are_refused(gql, services, clock, admin, settings):
    shop = await make_merchant(gql, services, clock, admin)
    grant = await _grant(gql, shop["token"], shop["id"])
    r = await gql.http.post(grant["uploadUrl"][:-3] + "abc", content=png())
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["reason"] == "INVALID_UPLOAD_GRANT"
    r = await gql.http.post("/media/uploads/not-a-grant", content=png())
    assert r.status_code == 401
    clock.advance(seconds=601)
    r = await gql.http.post(grant["uploadUrl"], content=png())
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["reason"] == "UPLOAD_GRANT_EXPIRED"
    assert await _rows(services) == (0, 0) and _files(settings) == []
