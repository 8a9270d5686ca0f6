"""Helpers of the identity tests: the development sender's outbox, code requests, verified members."""

from jingtan_api.testing import GraphQLClient, register_member, row_counts

ERR = "userErrors { code field message } errors { code }"

REQUEST_VERIFY = f"""mutation($i: RequestContactVerificationInput!) {{
  requestContactVerification(input: $i) {{ channel expiresAt resendAfterSeconds {ERR} }} }}"""
VERIFY = f"""mutation($i: VerifyContactInput!) {{
  verifyContact(input: $i) {{ user {{ id phone phoneVerifiedAt emailVerifiedAt }} {ERR} }} }}"""
REQUEST_LOGIN = f"""mutation($i: RequestCodeInput!) {{
  requestLoginCode(input: $i) {{ channel expiresAt resendAfterSeconds {ERR} }} }}"""
LOGIN_WITH_CODE = f"""mutation($i: LoginWithCodeInput!) {{
  loginWithCode(input: $i) {{ tokens {{ accessToken refreshToken }} user {{ id }} {ERR} }} }}"""
REQUEST_RESET = f"""mutation($i: RequestCodeInput!) {{
  requestPasswordReset(input: $i) {{ channel expiresAt resendAfterSeconds {ERR} }} }}"""
RESET = f"""mutation($i: ResetPasswordInput!) {{
  resetPassword(input: $i) {{ tokens {{ accessToken refreshToken }} user {{ id }} {ERR} }} }}"""


def outbox(services):
    return services.plugins.message_senders["development"]


async def verified_member(gql: GraphQLClient, services, clock, *, phone: str, **kw) -> dict:
    """Register with a phone and verify it through GraphQL."""
    member = await register_member(gql, phone=phone, **kw)
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    assert data["requestContactVerification"]["userErrors"] == []
    e164 = "+86" + phone[-11:] if not phone.startswith("+") else phone
    code = outbox(services).last_code(e164, "VERIFY_PHONE")
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": code}}, token=member["token"])
    assert data["verifyContact"]["userErrors"] == [], data
    member["e164"] = e164
    return member


async def unchanged_except(services, before: dict, allowed: set[str] = frozenset()) -> dict:
    """Row counts now; every table outside ``allowed`` has the count it had ``before``."""
    after = await row_counts(services.db)
    changed = {t for t in after if after[t] != before.get(t)}
    assert changed <= set(allowed), {t: (before.get(t), after[t]) for t in changed}
    return after
