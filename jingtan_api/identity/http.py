"""``GET /privacy/exports/{id}?expires=…&signature=…``: the member's data export, downloadable once.

The link is the credential (signed with the server's secret key, expiring, single-use), so it works
from a browser without the access token. Refusals answer JSON ``{"errors": [{"message", "extensions":
{"code"}}]}``: 403 EXPORT_LINK_INVALID, 410 EXPORT_LINK_USED / EXPORT_LINK_EXPIRED; nothing is written.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jingtan_api.identity import privacy


async def download_export(request: Request) -> Response:
    services = request.app.state.services
    try:
        export_id = int(request.path_params["export_id"])
    except (KeyError, ValueError):
        export_id = 0
    now = services.clock()
    try:
        blob = await services.db.write(lambda conn: privacy.download_export(
            services, conn, export_id=export_id, expires=request.query_params.get("expires", ""),
            signature=request.query_params.get("signature", ""), now=now))
    except privacy.LinkRefused as exc:
        return JSONResponse({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
                            status_code=exc.status, headers={"Cache-Control": "no-store"})
    return Response(blob, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="jingtan-data-export-{export_id}.zip"',
        "Cache-Control": "no-store",
    })
