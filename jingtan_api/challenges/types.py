"""GraphQL types of challenges: the challenge (result and live progress), participants, inputs, payloads."""

import json
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.challenges import service
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Keyset, Node, UserError, build_connection, page_args
from jingtan_api.errors import PermissionDenied
from jingtan_api.impact import service as impact_service
from jingtan_api.impact.types import Long
from jingtan_api.organisations import service as orgs_service
from jingtan_api.organisations.types import Organisation, organisations_loader
from jingtan_api.users.types import User, user_by_id


PROGRESS_KEYSET = Keyset("PROGRESS_DESC", (int,))


@strawberry.enum(description="Who takes part. / 参与范围。")
class ChallengeAudience(Enum):
    MEMBERS = "MEMBERS"
    CITY = "CITY"


@strawberry.enum(description="What the goal counts. / 目标类型。")
class ChallengeGoalKind(Enum):
    GRAMS = "GRAMS"
    ACTIONS = "ACTIONS"


@strawberry.enum(description="Lifecycle of a challenge. / 挑战状态。")
class ChallengeStatus(Enum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"
    SETTLED = "SETTLED"


def opt_out_loader(info: Info):
    """user id -> whether they opted out of being named (one statement per batch)."""
    ctx = info.context

    async def batch(ids):
        profiles = await ctx.read(impact_service.profiles_of, ids)
        return {uid: p.leaderboard_opt_out for uid, p in profiles.items()}

    return ctx.loader("impact_opt_out", batch)


async def require_can_see_participants(info: Info, challenge: "Challenge") -> None:
    """A members' challenge lists the organisation's members: only they and platform admins see it (as the
    member list); a city challenge's participants are for signed-in members."""
    viewer = info.context.viewer
    viewer.require_user()
    if challenge.audience == ChallengeAudience.MEMBERS:
        actor = orgs_service.Actor(user_id=viewer.user_id or 0, is_platform_admin=viewer.is_admin)
        if not await info.context.read(orgs_service.can_see_members, actor, challenge._organisation_id):
            raise PermissionDenied("Only the organisation's members can see its challenge's participants / "
                                   "仅组织成员可查看挑战参与者")


def progress_loader(info: Info):
    ctx = info.context
    return ctx.loader("challenge_progress", lambda ids: ctx.read(service.progress, ids))


@strawberry.type(description="A member's progress in a challenge. / 挑战参与者。")
class ChallengeParticipant(Node):
    grams: Long = strawberry.field(description="Grams CO2e counted. / 减排量（克）。")
    actions: int = strawberry.field(description="Approved actions counted. / 行为数。")
    progress: Long = strawberry.field(description="Grams or actions, as the goal counts. / 进度。")
    qualified_at: datetime | None = strawberry.field(description="When the goal was reached. / 达标时间。")
    rewarded_points: Long = strawberry.field(description="Points received at settlement. / 获得奖励。")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "ChallengeParticipant":
        return cls(pk=row["id"], grams=int(row["grams"]), actions=int(row["actions"]), progress=int(row["progress"]),
                   qualified_at=row["qualified_at"], rewarded_points=int(row["rewarded_points"]), _user_id=row["user_id"])

    @strawberry.field(description="The member's public profile; null when they opted out of being named on "
                      "leaderboards (unless it is you). / 成员（匿名时为空）。")
    async def member(self, info: Info) -> User | None:
        viewer = info.context.viewer
        if viewer.user_id != self._user_id and not viewer.is_admin:
            names = await opt_out_loader(info).load(self._user_id)
            if names:
                return None
        return await user_by_id(info, self._user_id)


@strawberry.type(description="A challenge an organisation runs (挑战). / 挑战。")
class Challenge(Node):
    name_zh: str = strawberry.field(description="中文名称。")
    name_en: str = strawberry.field(description="English name.")
    description_zh: str = strawberry.field(description="中文说明。")
    description_en: str = strawberry.field(description="English description.")
    audience: ChallengeAudience = strawberry.field(description="Members of the organisation or a city. / 参与范围。")
    city: str = strawberry.field(description="The city of a CITY challenge ('' otherwise). / 城市。")
    goal_kind: ChallengeGoalKind = strawberry.field(description="Grams CO2e or approved actions. / 目标类型。")
    goal_value: Long = strawberry.field(description="What each participant must reach. / 目标值。")
    action_types: list[str] = strawberry.field(description="Counted action types ([] = all). / 计入的行为类别。")
    starts_at: datetime = strawberry.field(description="Start (inclusive). / 开始。")
    ends_at: datetime = strawberry.field(description="End (exclusive). / 结束。")
    reward_points: Long = strawberry.field(description="Points per rewarded qualifier. / 每人奖励积分。")
    max_rewarded: int = strawberry.field(description="At most this many qualifiers are rewarded. / 奖励名额。")
    status: ChallengeStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="When it was created. / 创建时间。")
    settled_at: datetime | None = strawberry.field(description="When it was settled. / 结算时间。")
    rewarded: int = strawberry.field(description="Qualifiers rewarded at settlement. / 获奖人数。")
    paid_points: Long = strawberry.field(description="Points paid at settlement. / 已发奖励。")
    _organisation_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "Challenge":
        return cls(
            pk=row["id"], name_zh=row["name_zh"], name_en=row["name_en"], description_zh=row["description_zh"],
            description_en=row["description_en"], audience=ChallengeAudience(row["audience"]), city=row["city"],
            goal_kind=ChallengeGoalKind(row["goal_kind"]), goal_value=int(row["goal_value"]),
            action_types=json.loads(row["action_types"] or "[]"), starts_at=row["starts_at"], ends_at=row["ends_at"],
            reward_points=int(row["reward_points"]), max_rewarded=row["max_rewarded"],
            status=ChallengeStatus(row["status"]), created_at=row["created_at"], settled_at=row["settled_at"],
            rewarded=row["rewarded"], paid_points=int(row["paid_points"]), _organisation_id=row["organisation_id"],
        )

    @strawberry.field(description="The organisation running it. / 发起组织。")
    async def organisation(self, info: Info) -> Organisation | None:
        row = await organisations_loader(info).load(self._organisation_id)
        return Organisation.from_row(row) if row else None

    @strawberry.field(description="Participants so far (live). / 参与人数。")
    async def participant_count(self, info: Info) -> int:
        return (await progress_loader(info).load(self.pk)).participants

    @strawberry.field(description="Participants who reached the goal (live). / 达标人数。")
    async def qualified_count(self, info: Info) -> int:
        return (await progress_loader(info).load(self.pk)).qualified

    @strawberry.field(description="Grams CO2e counted for all participants (live). / 总减排量。")
    async def total_grams(self, info: Info) -> Long:
        return (await progress_loader(info).load(self.pk)).grams

    @strawberry.field(description="The viewer's own progress (null when not taking part). / 我的进度。")
    async def viewer_progress(self, info: Info) -> ChallengeParticipant | None:
        user_id = info.context.viewer.user_id
        if user_id is None:
            return None
        row = await info.context.read(service.participant, self.pk, user_id)
        return ChallengeParticipant.from_row(row) if row else None

    @strawberry.field(description="Participants, most progress first (the live leaderboard). / 参与者排名。")
    async def participants(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[ChallengeParticipant]:
        await require_can_see_participants(info, self)
        keyset = PROGRESS_KEYSET
        ctx = info.context
        args = page_args(info, first, after, last, before, keyset=keyset)
        page = await ctx.read(service.participants_page, self.pk, args)
        return build_connection(page, ChallengeParticipant.from_row,
                                count=lambda: ctx.read(service.participants_count, self.pk), keyset=keyset)


@strawberry.input(description="A new challenge. / 新挑战。")
class CreateChallengeInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation (you must be its admin). / 组织。")
    name_zh: str = strawberry.field(description="中文名称。")
    name_en: str = strawberry.field(default="", description="English name.")
    description_zh: str = strawberry.field(default="", description="中文说明。")
    description_en: str = strawberry.field(default="", description="English description.")
    audience: ChallengeAudience = strawberry.field(default=ChallengeAudience.MEMBERS, description="Who takes part. / 参与范围。")
    city: str | None = strawberry.field(default=None, description="City of a CITY challenge. / 城市。")
    goal_kind: ChallengeGoalKind = strawberry.field(description="Grams CO2e or actions. / 目标类型。")
    goal_value: Long = strawberry.field(description="What each participant must reach. / 目标值。")
    action_types: list[str] | None = strawberry.field(default=None, description="Only these action types. / 行为类别。")
    starts_at: datetime = strawberry.field(description="Start (now or later). / 开始。")
    ends_at: datetime = strawberry.field(description="End, after the start. / 结束。")
    reward_points: Long = strawberry.field(default=0, description="Points per rewarded qualifier. / 每人奖励。")
    max_rewarded: int = strawberry.field(default=0, description="How many qualifiers at most are rewarded. / 名额。")


@strawberry.input(description="Cancel a challenge before it ends. / 取消挑战。")
class CancelChallengeInput:
    challenge_id: strawberry.ID = strawberry.field(description="The challenge. / 挑战。")
    reason: str = strawberry.field(description="Why (audit-logged). / 原因。")


@strawberry.input(description="Settle an ended challenge now instead of waiting for the job. / 结算挑战。")
class SettleChallengeInput:
    challenge_id: strawberry.ID = strawberry.field(description="The challenge. / 挑战。")


ChallengeErrorCode = error_code_enum(
    "ChallengeErrorCode",
    ("CHALLENGE_ENDS_BEFORE_START", "CHALLENGE_STARTS_IN_PAST", "CHALLENGE_TOO_LONG", "REWARD_ABOVE_ACCOUNT",
     "CHALLENGE_NOT_ACTIVE", "CHALLENGE_ENDED", "CHALLENGE_NOT_ENDED", "UNKNOWN_ACTION_TYPE", "ORGANISATION_CLOSED",
     "ORGANISATION_NOT_ACTIVE"),
    description="Codes of the challenge mutations' errors. / 挑战错误代码。",
)
ChallengeError = user_error_type("ChallengeError", ChallengeErrorCode, description="Why a challenge mutation failed. / 挑战错误。")


@strawberry.type(description="Result of challenge mutations. / 挑战操作结果。")
class ChallengePayload:
    challenge: Challenge | None = strawberry.field(default=None, description="The challenge. / 挑战。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[ChallengeError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
