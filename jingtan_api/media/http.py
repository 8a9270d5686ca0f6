"""HTTP endpoints of images: the signed upload (POST ``/media/uploads/<grant>``) and the content-addressed
files (GET ``/media/<sha256>.<ext>``, cacheable forever). Errors are JSON ``{"errors": [{message,
extensions: {code}}]}`` like the GraphQL endpoint's refusals."""

from typing import TYPE_CHECKING

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jingtan_api.errors import DomainError, NotFound
from jingtan_api.media import service
from jingtan_api.media.storage import KEY, LocalDiskStorage, Storage
from jingtan_api.merchants.models import Merchant
from jingtan_api.offers.models import Offer

if TYPE_CHECKING:
    from jingtan_api.services import Services

STATUS = {"NOT_AN_IMAGE": 415, "IMAGE_TOO_LARGE": 413, "UNAUTHENTICATED": 401, "NOT_FOUND": 404}
CACHE_FOREVER = "public, max-age=31536000, immutable"
OWNER_TABLES = {"MERCHANT": Merchant.__table__, "OFFER": Offer.__table__}


def _error(exc: DomainError) -> JSONResponse:
    return JSONResponse({"errors": [{"message": exc.message, "extensions": exc.extensions}]},
                        status_code=STATUS.get(exc.code, 400))


def media_routes(app: "Services", storage: Storage | None = None) -> list[Route]:
    cfg = app.settings.merchants
    storage = storage or LocalDiskStorage(cfg.media_dir)

    async def upload(request: Request) -> Response:
        try:
            grant = service.read_grant(request.path_params["grant"], app.settings.secret_key, now=app.clock())
            data = await request.body()
            image = service.check_image(data, max_bytes=cfg.media_max_bytes, max_pixels=cfg.media_max_pixels)
            owner = OWNER_TABLES[grant.owner_type]
            async with app.db.read() as conn:
                found = (await conn.execute(select(owner.c.id).where(owner.c.id == grant.owner_id))).scalar_one_or_none()
            if found is None:
                raise NotFound("The merchant or offer no longer exists / 商户或优惠不存在")
            service.store(storage, image)
            now = app.clock()
            await app.db.write(lambda conn: service.link_image(conn, grant=grant, image=image, now=now))
        except DomainError as exc:
            return _error(exc)
        return JSONResponse(
            {"image": {"url": f"/media/{image.key}", "sha256": image.sha256, "contentType": image.content_type,
                       "width": image.width, "height": image.height, "sizeBytes": len(image.data),
                       "ownerType": grant.owner_type, "slot": grant.slot}},
            status_code=201,
        )

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        data = storage.get(name) if KEY.match(name) else None
        if data is None:
            return JSONResponse({"errors": [{"message": "No such image / 图片不存在", "extensions": {"code": "NOT_FOUND"}}]},
                                status_code=404)
        etag = f'"{name.split(".")[0]}"'
        headers = {"Cache-Control": CACHE_FOREVER, "ETag": etag, "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=service.CONTENT_TYPES[name.rsplit(".", 1)[1]], headers=headers)

    return [
        Route("/media/uploads/{grant}", upload, methods=["POST", "PUT"]),
        Route("/media/{name}", serve, methods=["GET", "HEAD"]),
    ]
