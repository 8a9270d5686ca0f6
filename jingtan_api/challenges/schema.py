"""Query and Mutation fields of challenges, ``Organisation.challenges``, and ``node(id:)`` lookups."""

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from jingtan_api.challenges import service
from jingtan_api.challenges.types import (
    CancelChallengeInput,
    Challenge,
    ChallengeParticipant,
    ChallengePayload,
    ChallengeStatus,
    CreateChallengeInput,
    SettleChallengeInput,
)
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.live.transport import events as live_events
from jingtan_api.impact.service import validate_city
from jingtan_api.organisations import service as orgs
from jingtan_api.organisations.types import Organisation, actor_of


def _challenge_id(gid: strawberry.ID) -> int:
    return decode_id(gid, "Challenge", field="challengeId")


async def _challenge(info: Info, challenge_id: int) -> Challenge:
    return Challenge.from_row(await info.context.read(service.challenge_row, challenge_id))


async def challenge_connection(info: Info, *, org_id=None, city=None, status=None, first, after, last, before):
    ctx = info.context
    args = page_args(info, first, after, last, before)
    st = status.value if status else None
    page = await ctx.read(service.challenges_page, args, org_id=org_id, city=city, status=st)
    return build_connection(page, Challenge.from_row,
                            count=lambda: ctx.read(service.challenges_count, org_id=org_id, city=city, status=st))


@strawberry.type
class ChallengesQuery:
    @strawberry.field(description="Challenges open to everyone in a city, newest first. / 城市挑战。")
    async def city_challenges(
        self, info: Info, city: str, status: ChallengeStatus | None = None, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Challenge]:
        return await challenge_connection(info, city=validate_city(city), status=status, first=first, after=after,
                                          last=last, before=before)


@strawberry.type
class ChallengesMutation:
    @payload_mutation(description="Create a challenge for the organisation (its admins; the reward budget must be "
                      "covered by its account). / 发起挑战。")
    async def create_challenge(self, info: Info, input: CreateChallengeInput) -> ChallengePayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = decode_id(input.organisation_id, "Organisation", field="organisationId")
        values = service.validate(
            {"name_zh": input.name_zh, "name_en": input.name_en, "description_zh": input.description_zh,
             "description_en": input.description_en, "audience": input.audience.value, "city": input.city,
             "goal_kind": input.goal_kind.value, "goal_value": input.goal_value, "action_types": input.action_types,
             "starts_at": input.starts_at, "ends_at": input.ends_at, "reward_points": input.reward_points,
             "max_rewarded": input.max_rewarded},
            now=ctx.now(), known_types=list(ctx.services.plugins.action_types),
            max_days=ctx.settings.impact.challenge_max_days, max_reward=ctx.settings.impact.challenge_max_reward_points,
        )
        challenge_id = await ctx.db.write(lambda conn: service.create_challenge(
            conn, actor=actor, org_id=org_id, values=values, now=ctx.now()))
        return ChallengePayload(challenge=await _challenge(info, challenge_id))

    @payload_mutation(description="Cancel a challenge before it ends (its organisation's admins). / 取消挑战。")
    async def cancel_challenge(self, info: Info, input: CancelChallengeInput) -> ChallengePayload:
        ctx = info.context
        actor = actor_of(info)
        challenge_id = _challenge_id(input.challenge_id)
        await ctx.db.write(lambda conn: service.cancel_challenge(
            conn, actor=actor, challenge_id=challenge_id, reason=input.reason, now=ctx.now()))
        return ChallengePayload(challenge=await _challenge(info, challenge_id))

    @payload_mutation(description="Settle an ended challenge now (its organisation's admins); settling twice changes "
                      "nothing. / 结算挑战。")
    async def settle_challenge(self, info: Info, input: SettleChallengeInput) -> ChallengePayload:
        ctx = info.context
        actor = actor_of(info)
        challenge_id = _challenge_id(input.challenge_id)
        lot_days = ctx.settings.points.lot_expiry_days

        async def work(conn):
            row = await service.challenge_row(conn, challenge_id)
            await orgs.require_admin(conn, actor, row["organisation_id"])
            return await service.settle(conn, challenge_id, now=ctx.now(), lot_expiry_days=lot_days,
                                        actor_user_id=actor.user_id)

        await ctx.db.write(work)
        return ChallengePayload(challenge=await _challenge(info, challenge_id))


@strawberry.type
class OrganisationChallenges:
    @strawberry.field(description="The organisation's challenges, newest first. / 组织的挑战。")
    async def challenges(
        self: Organisation, info: Info, status: ChallengeStatus | None = None, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> Connection[Challenge]:
        return await challenge_connection(info, org_id=self.pk, status=status, first=first, after=after, last=last,
                                          before=before)


async def challenge_nodes(info: Info, pks: list[int]) -> dict[int, Challenge]:
    rows = await info.context.read(service.challenges_by_ids, pks)
    return {pk: Challenge.from_row(r) for pk, r in rows.items()}


@strawberry.type
class ChallengesSubscription:
    @strawberry.subscription(description="The viewer's progress, each time an approved action of theirs counts towards a "
                             "challenge; `challengeId` follows one challenge. / 我的挑战进度变化。")
    async def challenge_progress_changed(
        self, info: Info, challenge_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[ChallengeParticipant, None]:
        user_id = info.context.viewer.require_user()
        wanted = _challenge_id(challenge_id) if challenge_id is not None else None
        if wanted is not None:
            await _challenge(info, wanted)  # NOT_FOUND for an unknown challenge
        async for message in live_events(info, [f"user:{user_id}"], ["challenge.progressed"]):
            challenge = message.get("challenge_id")
            if message.get("user_id") != user_id or not isinstance(challenge, int) or (wanted is not None and challenge != wanted):
                continue
            row = await info.context.read(service.participant, challenge, user_id)
            if row is not None:
                yield ChallengeParticipant.from_row(row)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="challenges",
        query=[ChallengesQuery],
        mutation=[ChallengesMutation],
        subscription=[ChallengesSubscription],
        types=[Challenge, ChallengeParticipant],
        nodes={"Challenge": challenge_nodes},
        extends={"Organisation": [OrganisationChallenges]},
    )
