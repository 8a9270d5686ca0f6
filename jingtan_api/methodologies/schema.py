"""The public methodology registry (``methodologies``, no login) and the expert committee's decisions."""

from typing import Annotated

import strawberry
from strawberry.types import Info

from jingtan_api.actions import service as actions
from jingtan_api.actions.types import Action
from jingtan_api.auth.permissions import EXPERT
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.methodologies import service
from jingtan_api.methodologies.types import (
    MethodologyStatus,
    MethodologyVersion,
    ReviewMethodologyVersionInput,
    ReviewMethodologyVersionPayload,
)


async def _versions(info: Info, rows: list[dict]) -> list[MethodologyVersion]:
    ctx = info.context
    current = set((await service.ensure_versions(ctx.services, now=ctx.now())).values())
    ids = [r["id"] for r in rows]
    reviews = await ctx.read(service.reviews_of, ids)
    totals = await ctx.read(service.totals_of, ids)
    return [MethodologyVersion.from_row(r, current_ids=current, reviews=reviews[r["id"]], totals=totals[r["id"]])
            for r in rows]


@strawberry.type
class MethodologiesQuery:
    @strawberry.field(
        description="The public registry of methodology versions, oldest first: factors with sources, formula, "
        "review state and history, and the grams credited under each (no login needed). / 方法学版本登记册（公开）。"
    )
    async def methodologies(
        self,
        info: Info,
        action_type: Annotated[str | None, strawberry.argument(description="Only this action type (code).")] = None,
        status: MethodologyStatus | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[MethodologyVersion]:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        await service.ensure_versions(ctx.services, now=ctx.now())
        filters = {"plugin_code": action_type, "status": status.value if status else None}
        page = await ctx.read(service.versions_page, args, **filters)
        nodes = {n.pk: n for n in await _versions(info, [dict(r) for r in page.rows])}
        return build_connection(page, lambda r: nodes[r["id"]], count=lambda: ctx.read(service.count_versions, **filters))


@strawberry.type
class MethodologiesMutation:
    @payload_mutation(
        description="Approve, reject or retire a methodology version (expert committee; audited). Approval credits the "
        "actions waiting for it, in batches. / 专家审核方法学版本。"
    )
    async def review_methodology_version(
        self, info: Info, input: ReviewMethodologyVersionInput
    ) -> ReviewMethodologyVersionPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(EXPERT, scope="methodologies:review")
        version_id = decode_id(input.version_id, "MethodologyVersion", field="versionId")
        now = ctx.now()
        decision = await service.decide(ctx.services, actor_user_id=actor, version_id=version_id,
                                        decision=input.decision.value, note=input.note, now=now,
                                        request_id=ctx.request_id)
        credited = rejected = 0
        if decision.status == service.APPROVED:
            credited, _ = await actions.credit_waiting(ctx.services, version_id=version_id, now=now)
        elif decision.status == service.REJECTED:
            rejected = await actions.reject_waiting(ctx.services, version_id=version_id, note=input.note, now=now)
        rows = await ctx.read(service.versions_by_ids, [version_id])
        (version,) = await _versions(info, [rows[version_id]])
        return ReviewMethodologyVersionPayload(version=version, actions_credited=credited, actions_rejected=rejected)


@strawberry.type
class ActionMethodologyVersion:
    """Fields of ``Action`` from methodology governance."""

    @strawberry.field(
        description="The methodology version (factors, formula) it was calculated with; null for actions recorded "
        "before versions were kept, or never calculated. / 计算所用的方法学版本。"
    )
    async def methodology_version(self: Action, info: Info) -> MethodologyVersion | None:
        if self.methodology_version_pk is None or self.calculation is None:
            return None
        nodes = await _version_nodes(info, [self.methodology_version_pk])
        return nodes.get(self.methodology_version_pk)


async def _version_nodes(info: Info, pks: list[int]) -> dict[int, MethodologyVersion]:
    rows = await info.context.read(service.versions_by_ids, pks)
    return {n.pk: n for n in await _versions(info, list(rows.values()))}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="methodologies", query=[MethodologiesQuery], mutation=[MethodologiesMutation],
        types=[MethodologyVersion], nodes={"MethodologyVersion": _version_nodes},
        extends={"Action": [ActionMethodologyVersion]},
    )
