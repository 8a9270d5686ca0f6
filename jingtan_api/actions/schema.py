"""Query/Mutation fields of actions. ``ActionInput`` (@oneOf, one field per enabled action type) and
``SubmitActionInput`` are built per app from the plugin host, so this module must not use
``from __future__ import annotations``."""

import logging
import typing
from typing import Annotated

import strawberry
from strawberry.types import Info

from jingtan_api.actions import service
from jingtan_api.actions.inputs import InputBuilder, to_plain
from jingtan_api.actions.types import (
    Action,
    ActionEvidenceInput,
    ActionStatus,
    ActionTypeInfo,
    ReviewActionInput,
    ReviewActionPayload,
    ReviewDecision,
    SubmitActionPayload,
    action_type_infos,
    can_see_action,
)
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import NotFound, PermissionDenied
from jingtan_api.live.transport import events as live_events
from jingtan_api.graphql.relay import (
    Connection,
    build_connection,
    decode_id,
    page_args,
)
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.plugins.manager import PluginHost, pascal
from jingtan_api.users.types import User, require_personal

log = logging.getLogger("jingtan.actions")


async def action_connection(
    info: Info, *, user_id: int | None, status: str | None, first, after, last, before, plugin_code: str | None = None
) -> Connection[Action]:
    ctx = info.context
    args = page_args(info, first, after, last, before)
    page = await ctx.read(service.actions_page, args, user_id=user_id, status=status, plugin_code=plugin_code)
    return build_connection(
        page, Action.from_row,
        count=lambda: ctx.read(service.count_actions, user_id=user_id, status=status, plugin_code=plugin_code),
    )


@strawberry.type
class ActionsQuery:
    @strawberry.field(description="Enabled categories of low-carbon action with their methodology. / 已启用的低碳行为类别。")
    def action_types(self, info: Info) -> list[ActionTypeInfo]:
        return list(action_type_infos(info).values())

    @strawberry.field(description="All actions, newest first (admins only). / 全部行为（管理员）。")
    async def actions(
        self,
        info: Info,
        status: ActionStatus | None = None,
        action_type: Annotated[str | None, strawberry.argument(description="Only this category (code).")] = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Action]:
        info.context.viewer.require_role(ADMIN, scope="actions:review")
        return await action_connection(
            info, user_id=None, status=status.value if status else None, first=first, after=after, last=last,
            before=before, plugin_code=action_type,
        )

    @strawberry.field(description="Actions waiting for review, newest first (admins only). / 待审核行为（管理员）。")
    async def review_queue(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Action]:
        info.context.viewer.require_role(ADMIN, scope="actions:review")
        return await action_connection(
            info, user_id=None, status=service.NEEDS_REVIEW, first=first, after=after, last=last, before=before
        )


async def _load_action(info: Info, action_id: int) -> Action:
    rows = await info.context.read(service.actions_by_ids, [action_id])
    return Action.from_row(rows[action_id])


@strawberry.type
class ReviewMutation:
    @payload_mutation(description="Approve or reject a pending action (admin; audit-logged). / 审核待定行为。")
    async def review_action(self, info: Info, input: ReviewActionInput) -> ReviewActionPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="actions:review")
        action_id = decode_id(input.action_id, "Action", field="actionId")
        await service.review(
            ctx.services,
            actor_user_id=actor,
            action_id=action_id,
            approve=input.decision == ReviewDecision.APPROVE,
            reason=input.reason,
            now=ctx.now(),
            request_id=ctx.request_id,
        )
        return ReviewActionPayload(action=await _load_action(info, action_id))


@strawberry.type
class UserActions:
    """Fields of ``User`` from the actions domain."""

    @strawberry.field(description="Low-carbon actions the user submitted, newest first (only the user and admins). / 提交的低碳行为。")
    async def actions(
        self: User,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Action]:
        require_personal(info, self)
        info.context.viewer.require_any_scope("account:read", "actions:write", "actions:review")
        return await action_connection(info, user_id=self.pk, status=None, first=first, after=after, last=last, before=before)


ACTION_EVENTS = ("action.recorded", "action.reviewed")


@strawberry.type
class ActionsSubscription:
    @strawberry.subscription(description="The viewer's actions, each time one is recorded or its status changes "
                             "(submitted, approved, rejected, reviewed); `actionId` follows one action. / 我的行为状态变化。")
    async def action_status_changed(
        self, info: Info,
        action_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this action (yours). / 仅此行为。")] = None,
    ) -> typing.AsyncGenerator[Action, None]:
        viewer = info.context.viewer
        user_id = viewer.require_user()
        owner = user_id
        wanted: int | None = None
        if action_id is not None:
            wanted = decode_id(action_id, "Action", field="actionId")
            rows = await info.context.read(service.actions_by_ids, [wanted])
            if wanted not in rows:
                raise NotFound("No such action / 行为不存在", field="actionId")
            if not can_see_action(info, rows[wanted]):
                raise PermissionDenied("That action is another member's / 该行为属于其他会员")
            owner = rows[wanted]["user_id"]
        else:
            viewer.require_any_scope("account:read", "actions:write")
        async for message in live_events(info, [f"user:{owner}"], ACTION_EVENTS):
            if message.get("user_id") != owner or (wanted is not None and message.get("action_id") != wanted):
                continue
            rows = await info.context.read(service.actions_by_ids, [message["action_id"]])
            row = rows.get(message["action_id"])
            if row is not None and can_see_action(info, row):
                yield Action.from_row(row)


async def _action_nodes(info: Info, pks: list[int]) -> dict[int, Action]:
    rows = await info.context.read(service.actions_by_ids, pks)
    return {pk: Action.from_row(r) for pk, r in rows.items() if can_see_action(info, r)}


@hookimpl
def jingtan_register_domain(host: PluginHost, reserved_type_names: frozenset[str]) -> Domain:
    mutation: list[type] = [ReviewMutation]
    if host.action_types:
        mutation.append(build_submit_fragment(host, reserved_type_names))
    return Domain(
        name="actions",
        query=[ActionsQuery],
        mutation=mutation,
        subscription=[ActionsSubscription],
        types=[Action],
        nodes={"Action": _action_nodes},
        extends={"User": [UserActions]},
    )


def build_submit_fragment(host: PluginHost, reserved_names: frozenset[str]) -> type:
    """``submitAction`` with its @oneOf ``ActionInput``: one field per enabled action type."""
    builder = InputBuilder(reserved_names)
    annotations: dict[str, typing.Any] = {}
    namespace: dict[str, typing.Any] = {}
    for loaded in host.action_types.values():
        at = loaded.action_type
        input_type = builder.build(
            at.Input, loaded.input_type_name, loaded.plugin,
            description=f"{at.name_en} / {at.name_zh}: {(at.Input.__doc__ or '').strip()}",
            prefix=pascal(loaded.code),
        )
        annotations[loaded.code] = input_type | None
        namespace[loaded.code] = strawberry.field(
            default=strawberry.UNSET, name=loaded.field_name, description=f"{at.name_en} / {at.name_zh} ({at.code} v{at.version})"
        )
    namespace["__annotations__"] = annotations
    namespace["__module__"] = __name__
    action_input = strawberry.input(
        type("ActionInput", (), namespace),
        name="ActionInput",
        one_of=True,
        description="Exactly one field: the category of the action and its data. / 恰好填写一个字段：行为类别及其数据。",
    )

    submit_namespace = {
        "__annotations__": {
            "action": action_input,
            "idempotency_key": str,
            "evidence": ActionEvidenceInput | None,
        },
        "__module__": __name__,
        "action": strawberry.field(description="What was done. / 行为内容。"),
        "idempotency_key": strawberry.field(
            description="Client-chosen unique key; a retry with the same key and input returns the first result. / 幂等键。"
        ),
        "evidence": strawberry.field(default=None, description="Optional evidence (partner record, signature). / 凭证。"),
    }
    submit_input = strawberry.input(
        type("SubmitActionInput", (), submit_namespace),
        name="SubmitActionInput",
        description="Submit a low-carbon action. / 提交低碳行为。",
    )

    async def submit_action(self, info: Info, input: submit_input) -> SubmitActionPayload:  # type: ignore[valid-type]
        ctx = info.context
        user_id = ctx.viewer.require_user()
        ctx.viewer.require_scope("actions:write")
        # ActionInput is @oneOf: graphql-core lets exactly one field through.
        ((code, value),) = [
            (code, getattr(input.action, code))
            for code in host.action_types
            if getattr(input.action, code) not in (None, strawberry.UNSET)
        ]
        evidence = to_plain(input.evidence) if input.evidence is not None else None
        result = await service.submit(
            ctx.services,
            user_id=user_id,
            code=code,
            raw_input=to_plain(value),
            raw_evidence=evidence,
            idempotency_key=input.idempotency_key,
            now=ctx.now(),
        )
        # A new action's payload is its row as the INSERT returned it; a replay reads the stored one.
        action = Action.from_row(result.row) if result.row is not None else await _load_action(info, result.action_id)
        return SubmitActionPayload(action=action, replayed=result.replayed)

    fragment = strawberry.type(
        type(
            "SubmitActionMutation",
            (),
            {
                "__module__": __name__,
                "submit_action": payload_mutation(
                    resolver=submit_action,
                    description="Submit a low-carbon action; the enabled plugin verifies it, computes CO2e and the core credits points. / 提交低碳行为。",
                ),
            },
        )
    )
    return fragment
