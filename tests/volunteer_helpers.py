"""Helpers of the volunteer tests: operations, a certified volunteer, an event."""

from datetime import timedelta
from pathlib import Path

from offers_helpers import make_member

OPS = Path(__file__).resolve().parent.parent / "schema" / "operations" / "volunteer"


def op(name: str) -> str:
    return (OPS / f"{name}.graphql").read_text(encoding="utf-8")


def op_register() -> str:
    return (OPS.parent / "account" / "Register.graphql").read_text(encoding="utf-8")


COURSE = {
    "level": "CERTIFIED",
    "titleZh": "低碳志愿者入门",
    "titleEn": "Low-carbon volunteering 101",
    "passMarkPercent": 50,
    "lessons": [{"titleZh": "什么是碳普惠", "titleEn": "What carbon inclusion is",
                 "bodyZh": "碳普惠让每个人的低碳行为被看见。", "bodyEn": "Carbon inclusion rewards everyone's low-carbon actions."}],
    "questions": [
        {"promptZh": "骑车比开车排放更少吗？", "promptEn": "Does cycling emit less than driving?", "options": ["是 Yes", "否 No"], "answer": 0},
        {"promptZh": "积分含有碳减排量吗？", "promptEn": "Do promotional points carry CO2e?", "options": ["是 Yes", "否 No"], "answer": 1},
    ],
}


async def payload(client, name: str, field: str, variables: dict) -> dict:
    data = await client.ok(op(name), variables)
    return data[field]


async def ensure_course(gql, admin) -> str:
    staff = gql.as_user(admin["token"])
    listed = await staff.ok(op("VolunteerCourses"), {"level": "CERTIFIED"})
    if listed["volunteerCourses"]["edges"]:
        return listed["volunteerCourses"]["edges"][0]["node"]["id"]
    out = await payload(staff, "CreateVolunteerCourse", "createVolunteerCourse", {"input": COURSE})
    assert out["errors"] == [], out
    return out["course"]["id"]


async def make_volunteer(gql, services, clock, admin, *, certified: bool = True, name: str = "志愿者 Volunteer") -> dict:
    """A member who applied, was approved and (by default) passed the required course."""
    member = await make_member(services, clock, name=name)
    me = gql.as_user(member["token"])
    applied = await payload(me, "ApplyToVolunteer", "applyToVolunteer", {
        "input": {"city": "深圳 Shenzhen", "skills": ["垃圾分类 Sorting waste"], "motivation": "我想帮助社区减少碳排放 I want to help"}
    })
    assert applied["errors"] == [], applied
    reviewed = await payload(gql.as_user(admin["token"]), "ReviewVolunteerApplication", "reviewVolunteerApplication", {
        "input": {"volunteerId": applied["volunteer"]["id"], "approve": True, "reason": "资料齐全 Complete"}
    })
    assert reviewed["errors"] == [], reviewed
    member.update(volunteer_id=applied["volunteer"]["id"], code=reviewed["volunteer"]["referralCode"], client=me)
    if certified:
        course = await ensure_course(gql, admin)
        out = await payload(me, "SubmitVolunteerCourseAttempt", "submitVolunteerCourseAttempt",
                            {"input": {"courseId": course, "answers": [0, 1]}})
        assert out["errors"] == [] and out["volunteer"]["level"] == "CERTIFIED", out
    return member


def event_input(clock, **overrides) -> dict:
    start = clock() + timedelta(hours=2)
    data = {
        "titleZh": "社区回收日", "titleEn": "Community recycling day", "description": "带上可回收物 Bring recyclables",
        "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=2)).isoformat(),
        "place": "莲花山公园 Lianhuashan Park", "latitude": 22.55, "longitude": 114.05, "capacity": 10, "rewardPoints": 20,
    }
    data.update(overrides)
    return data


async def make_event(volunteer: dict, clock, **overrides) -> str:
    out = await payload(volunteer["client"], "CreateVolunteerEvent", "createVolunteerEvent",
                        {"input": event_input(clock, **overrides)})
    assert out["errors"] == [], out
    return out["event"]["id"]


async def invariants(services) -> None:
    from jingtan_api.accounts.service import check_invariants

    async with services.db.read() as conn:
        assert await check_invariants(conn) == []


def fresh(gql, services, clock, user_pk: int, *roles: str):
    """A client with a newly minted access token (after the test clock jumped past the token's lifetime)."""
    from jingtan_api.auth.permissions import MEMBER

    token, _ = services.access_tokens.issue(user_pk, frozenset({MEMBER, *roles}), clock())
    return gql.as_user(token)
