"""Phone change (re-verification, notice to the old number, a number another account verified),
sessions and devices, consent versions — through GraphQL over HTTP on SQLite and PostgreSQL."""


from identity_helpers import ERR, outbox, unchanged_except, verified_member
from jingtan_api.testing import register_member, row_counts

REQUEST_CHANGE = f"""mutation($i: RequestPhoneChangeInput!) {{
  requestPhoneChange(input: $i) {{ channel expiresAt {ERR} }} }}"""
CONFIRM_CHANGE = f"""mutation($i: ConfirmPhoneChangeInput!) {{
  confirmPhoneChange(input: $i) {{ user {{ phone phoneVerifiedAt }} {ERR} }} }}"""
LOGIN = """mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken refreshToken } userErrors { code } } }"""
REFRESH = "mutation($i: RefreshTokenInput!) { refreshToken(input: $i) { tokens { refreshToken } userErrors { code } } }"
SESSIONS = """query($first: Int, $after: String) { viewer { sessions(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } nodes { id deviceName address createdAt lastUsedAt expiresAt } } } }"""
END = f"mutation($i: EndSessionInput!) {{ endSession(input: $i) {{ session {{ id deviceName }} {ERR} }} }}"
CONSENT = """query { legalDocuments { termsVersion privacyVersion }
  viewer { consent { termsVersion privacyVersion acceptedAt currentTermsVersion needsAcceptance } } }"""
ACCEPT = f"""mutation($i: AcceptConsentInput!) {{ acceptConsent(input: $i) {{
  consent {{ termsVersion privacyVersion needsAcceptance }} {ERR} }} }}"""


async def test_phone_change_reverifies_and_notifies_the_old_number(gql, services, clock):
    member = await verified_member(gql, services, clock, phone="13800138301")
    data = await gql.ok(REQUEST_CHANGE, {"i": {"newPhone": "13900139301"}}, token=member["token"])
    assert data["requestPhoneChange"]["channel"] == "SMS"
    code = outbox(services).last_code("+8613900139301", "CHANGE_PHONE")
    data = await gql.ok(CONFIRM_CHANGE, {"i": {"newPhone": "13900139301", "code": code}}, token=member["token"])
    user = data["confirmPhoneChange"]["user"]
    assert user["phone"] == "+8613900139301" and user["phoneVerifiedAt"] is not None
    notice = outbox(services).messages_to("+8613800138301")[-1]
    assert notice.purpose == "PHONE_CHANGED" and notice.code is None and "更换" in notice.text
    # The old number no longer logs in; the new one does.
    data = await gql.ok(LOGIN, {"i": {"identifier": "13800138301", "password": member["password"]}})
    assert data["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    data = await gql.ok(LOGIN, {"i": {"identifier": "13900139301", "password": member["password"]}})
    assert data["login"]["userErrors"] == []
    audit = await gql.ok("query { auditLog(action: \"identity.phone_changed\") { totalCount } }",
                         token=(await _admin_token(gql, services, clock)))
    assert audit["auditLog"]["totalCount"] == 1


async def _admin_token(gql, services, clock):
    from jingtan_api.users import service as users_service

    await users_service.create_admin(services, email="privacy-admin@example.cn", phone=None,
                                     password="Sturdy-oak-2026", display_name="管理员 Admin", now=clock())
    data = await gql.ok(LOGIN, {"i": {"identifier": "privacy-admin@example.cn", "password": "Sturdy-oak-2026"}})
    return data["login"]["tokens"]["accessToken"]


async def test_a_number_another_account_verified_is_refused(gql, services, clock):
    await verified_member(gql, services, clock, phone="13800138302")
    other = await register_member(gql, email="other@example.cn")
    before = await row_counts(services.db)
    data = await gql.ok(REQUEST_CHANGE, {"i": {"newPhone": "+86 138-0013-8302"}}, token=other["token"])
    assert data["requestPhoneChange"]["errors"] == [{"code": "CONTACT_TAKEN"}]
    assert data["requestPhoneChange"]["userErrors"][0]["field"] == ["input", "newPhone"]
    data = await gql.ok(CONFIRM_CHANGE, {"i": {"newPhone": "13800138302", "code": "123456"}}, token=other["token"])
    assert data["confirmPhoneChange"]["errors"] == [{"code": "CONTACT_TAKEN"}]
    await unchanged_except(services, before)
    data = await gql.ok(REQUEST_CHANGE, {"i": {"newPhone": "12"}}, token=other["token"])
    assert data["requestPhoneChange"]["errors"] == [{"code": "INVALID_PHONE"}]
    mine = await verified_member(gql, services, clock, phone="13800138303")
    data = await gql.ok(REQUEST_CHANGE, {"i": {"newPhone": "13800138303"}}, token=mine["token"])
    assert data["requestPhoneChange"]["errors"] == [{"code": "SAME_PHONE"}]
    await unchanged_except(services, before, {"user_account", "account", "refresh_token", "auth_session",
                                              "user_consent", "verification_code", "audit_log"})


async def test_verifying_a_number_held_unverified_elsewhere_releases_it(gql, services, clock):
    squatter = await register_member(gql, phone="13800138304")  # typed someone else's number, never verified
    owner = await register_member(gql, email="owner@example.cn")
    await gql.ok(REQUEST_CHANGE, {"i": {"newPhone": "13800138304"}}, token=owner["token"])
    code = outbox(services).last_code("+8613800138304", "CHANGE_PHONE")
    data = await gql.ok(CONFIRM_CHANGE, {"i": {"newPhone": "13800138304", "code": code}}, token=owner["token"])
    assert data["confirmPhoneChange"]["user"]["phone"] == "+8613800138304"
    data = await gql.ok("query { viewer { phone } }", token=squatter["token"])
    assert data["viewer"]["phone"] is None


async def test_sessions_list_and_end(gql, services, clock):
    member = await register_member(gql, email="devices@example.cn")
    phone = await gql.ok(LOGIN, {"i": {"identifier": "devices@example.cn", "password": member["password"],
                                       "deviceName": "华为 Mate 60"}})
    clock.advance(minutes=5)
    laptop = await gql(LOGIN, {"i": {"identifier": "devices@example.cn", "password": member["password"]}},
                       headers={"User-Agent": "Mozilla/5.0 (Macintosh)"})
    laptop = laptop["data"]
    data = await gql.ok(SESSIONS, {"first": 2}, token=member["token"])
    sessions = data["viewer"]["sessions"]
    assert sessions["totalCount"] == 3 and sessions["pageInfo"]["hasNextPage"] is True
    assert [n["deviceName"] for n in sessions["nodes"]] == ["Mozilla/5.0 (Macintosh)", "华为 Mate 60"]
    assert sessions["nodes"][0]["address"] == "127.0.0.1"
    rest = await gql.ok(SESSIONS, {"first": 2, "after": sessions["pageInfo"]["endCursor"]}, token=member["token"])
    assert len(rest["viewer"]["sessions"]["nodes"]) == 1
    # Refreshing moves lastUsedAt.
    clock.advance(minutes=5)
    await gql.ok(REFRESH, {"i": {"refreshToken": phone["login"]["tokens"]["refreshToken"]}})
    data = await gql.ok(SESSIONS, {"first": 5}, token=member["token"])
    mate = next(n for n in data["viewer"]["sessions"]["nodes"] if n["deviceName"] == "华为 Mate 60")
    assert mate["lastUsedAt"] > mate["createdAt"]
    # End the laptop's session: its refresh token is refused at once.
    laptop_id = data["viewer"]["sessions"]["nodes"][0]["id"]
    data = await gql.ok(END, {"i": {"id": laptop_id}}, token=member["token"])
    assert data["endSession"]["session"]["deviceName"] == "Mozilla/5.0 (Macintosh)"
    data = await gql.ok(REFRESH, {"i": {"refreshToken": laptop["login"]["tokens"]["refreshToken"]}})
    assert data["refreshToken"]["userErrors"] == [{"code": "INVALID_REFRESH_TOKEN"}]
    data = await gql.ok(SESSIONS, {"first": 5}, token=member["token"])
    assert data["viewer"]["sessions"]["totalCount"] == 2
    # Ending it again, or someone else's session: NOT_FOUND, nothing written.
    stranger = await register_member(gql, email="stranger@example.cn")
    before = await row_counts(services.db)
    data = await gql.ok(END, {"i": {"id": laptop_id}}, token=member["token"])
    assert data["endSession"]["errors"] == [{"code": "NOT_FOUND"}]
    mate_id = mate["id"]
    data = await gql.ok(END, {"i": {"id": mate_id}}, token=stranger["token"])
    assert data["endSession"]["errors"] == [{"code": "NOT_FOUND"}]
    data = await gql.ok(END, {"i": {"id": "bm9wZQ=="}}, token=member["token"])
    assert data["endSession"]["errors"][0]["code"] in ("BAD_USER_INPUT", "NOT_FOUND")
    await unchanged_except(services, before)
    # Other people's sessions are not visible through node(id:).
    data = await gql.ok("query($id: ID!) { node(id: $id) { id } }", {"id": mate_id}, token=stranger["token"])
    assert data["node"] is None


async def test_consent_recorded_at_registration_and_reaccepted(db_url, clock):
    from jingtan_api.app import create_app
    from jingtan_api.testing import GraphQLClient, make_settings

    first = create_app(make_settings(db_url), clock=clock)
    async with first.router.lifespan_context(first):
        gql = GraphQLClient(first)
        member = await register_member(gql, email="consent@example.cn")
        data = await gql.ok(CONSENT, token=member["token"])
        assert data["viewer"]["consent"]["termsVersion"] == "2026-12-01"
        assert data["viewer"]["consent"]["needsAcceptance"] is False
        await gql.aclose()
    # A new version of the privacy notice: the member must accept it again.
    second = create_app(make_settings(db_url, identity={"privacy_version": "2027-03-01"}), clock=clock)
    async with second.router.lifespan_context(second):
        gql = GraphQLClient(second)
        services = second.state.services
        data = await gql.ok(CONSENT, token=member["token"])
        assert data["legalDocuments"]["privacyVersion"] == "2027-03-01"
        assert data["viewer"]["consent"]["needsAcceptance"] is True
        before = await row_counts(services.db)
        data = await gql.ok(ACCEPT, {"i": {"termsVersion": "2026-12-01", "privacyVersion": "2026-12-01"}},
                            token=member["token"])
        assert data["acceptConsent"]["errors"] == [{"code": "CONSENT_VERSION_OUTDATED"}]
        assert data["acceptConsent"]["userErrors"][0]["field"] == ["input", "privacyVersion"]
        await unchanged_except(services, before)
        data = await gql.ok(ACCEPT, {"i": {"termsVersion": "2026-12-01", "privacyVersion": "2027-03-01"}},
                            token=member["token"])
        assert data["acceptConsent"]["consent"] == {"termsVersion": "2026-12-01", "privacyVersion": "2027-03-01",
                                                    "needsAcceptance": False}
        await gql.aclose()
