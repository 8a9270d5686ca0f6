"""Configuration: ``JINGTAN_*`` environment variables over a TOML file.

Precedence (highest first): keyword arguments, environment variables (``JINGTAN_`` prefix, nested
sections joined with ``__``, e.g. ``JINGTAN_AUTH__ACCESS_TOKEN_TTL_SECONDS``), the TOML file named by
``JINGTAN_CONFIG`` (default ``./jingtan.toml`` when it exists), then the defaults below.
``jingtan.example.toml`` documents every key; a test keeps it in sync with this module.
"""

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me-in-production"
DEFAULT_CONFIG_FILE = "jingtan.toml"


class ConfigurationError(Exception):
    """Raised when the configuration cannot be used; the message is one line meant for operators."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthSettings(_Section):
    access_token_ttl_seconds: int = Field(900, ge=60, le=86400, description="Lifetime of a JWT access token.")
    refresh_token_ttl_days: int = Field(30, ge=1, le=365, description="Lifetime of a refresh token.")
    jwt_issuer: str = Field("jingtan", description="`iss` claim written and required.")
    jwt_audience: str = Field("jingtan-api", description="`aud` claim written and required.")
    argon2_time_cost: int = Field(3, ge=1, description="argon2id iterations.")
    argon2_memory_cost_kib: int = Field(65536, ge=8, description="argon2id memory in KiB.")
    argon2_parallelism: int = Field(4, ge=1, description="argon2id lanes.")
    password_min_length: int = Field(8, ge=6, le=128, description="Shortest accepted password.")
    login_window_seconds: int = Field(3600, ge=1, description="Window for counting failed logins.")
    login_free_failures_per_client: int = Field(
        3, ge=1, description="Failed logins of one account from one client address before delays start."
    )
    login_free_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client address (all accounts) before delays start."
    )
    login_free_failures_per_account: int = Field(
        10,
        ge=1,
        description="Failed logins of one account from all addresses before delays start; addresses that "
        "logged in to the account successfully are exempt.",
    )
    login_base_delay_seconds: float = Field(
        1.0, gt=0, description="First delay after the free failures; it doubles with each further failure."
    )
    login_max_delay_seconds: float = Field(900.0, gt=0, description="Longest delay between two login attempts.")
    login_known_client_days: int = Field(
        90, ge=1, description="Days an address that logged in successfully stays known to the account."
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from X-Forwarded-For (only behind a trusted proxy)."
    )


class PointsSettings(_Section):
    lot_expiry_days: int = Field(365, ge=1, description="Days before credited points expire.")
    expiring_soon_days: int = Field(30, ge=1, description="Horizon of `expiringSoon`.")
    expiry_interval_seconds: int = Field(
        3600, ge=0, description="How often the server runs the expiry job; 0 turns it off (use the CLI)."
    )
    max_single_amount: int = Field(
        1_000_000, ge=1, description="Largest amount one grant/revoke/credit may move."
    )
    grams_per_point: int = Field(
        10, ge=1, le=1_000_000, description="Grams CO2e per point credited for an action (rounded down)."
    )


class ActionsSettings(_Section):
    claim_window_days: int = Field(
        7, ge=1, le=366, description="Actions that ended more than this many days ago are refused."
    )
    timezone: str = Field(
        "Asia/Shanghai", description="Time zone of 'day' and 'month' in caps (IANA name)."
    )
    review_above_points: int = Field(
        2000, ge=0,
        description="An action of any type that would credit more points than this goes to review (the core "
        "applies it after the plugin's calculate; docs/actions.md).",
    )
    review_above_points_by_type: dict[str, int] = Field(
        default_factory=dict,
        description="review_above_points for single action types, by code (e.g. {energy_saving = 1000}).",
    )
    member_daily_cap_points: int = Field(
        5000, ge=0,
        description="Most points one member is credited for actions per local day, all types together "
        "(counted when credited).",
    )
    member_monthly_cap_points: int = Field(
        30000, ge=0,
        description="Most points one member is credited for actions per local month, all types together "
        "(counted when credited).",
    )

    @model_validator(mode="after")
    def _check_review_thresholds(self) -> "ActionsSettings":
        bad = sorted(code for code, value in self.review_above_points_by_type.items() if value < 0)
        if bad:
            raise ValueError(f"review_above_points_by_type must not be negative: {bad}")
        return self

    @model_validator(mode="after")
    def _check_timezone(self) -> "ActionsSettings":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self


class OffersSettings(_Section):
    redemption_valid_days: int = Field(
        7, ge=1, le=365, description="Days a redemption code stays valid before it expires and is refunded."
    )
    refund_min_valid_days: int = Field(
        7, ge=0, le=365, description="Refunded points stay valid at least this many days after the refund."
    )
    max_quantity: int = Field(100, ge=1, description="Largest quantity one redemption may ask for.")
    settlement_utc_offset_minutes: int = Field(
        480, ge=-720, le=840, description="Time zone of settlement days (default UTC+8, China Standard Time)."
    )


class VolunteersSettings(_Section):
    """Volunteer programme (docs/volunteers.md)."""

    checkin_code_seconds: int = Field(60, ge=15, le=3600, description="How long one event check-in code is shown before it rotates.")
    checkin_grace_codes: int = Field(1, ge=0, le=5, description="Previous check-in codes still accepted (scanning takes time).")
    checkin_opens_minutes: int = Field(60, ge=0, le=1440, description="Check-in opens this many minutes before an event starts.")
    max_event_reward_points: int = Field(200, ge=0, description="Largest promotional reward an event may credit per attendee.")
    max_event_capacity: int = Field(5000, ge=1, description="Largest capacity of one event.")
    hours_auto_confirm_after_hours: int = Field(72, ge=1, description="Hours after an event ends when its service hours confirm themselves (with attendance).")
    referral_points: int = Field(50, ge=0, description="Promotional points a volunteer gets when a referred member's first action is approved.")
    referral_daily_cap: int = Field(10, ge=0, description="Referral bonuses one volunteer may get per day (UTC+8).")
    referral_monthly_cap: int = Field(100, ge=0, description="Referral bonuses one volunteer may get per calendar month (UTC+8).")
    referral_window_days: int = Field(30, ge=0, description="Days after registration a member may still enter a referral code.")
    farming_threshold: int = Field(3, ge=2, description="Referred accounts sharing one address or device that flag a volunteer.")
    inactive_referral_days: int = Field(30, ge=1, description="Referred accounts without an approved action after this many days count as inactive.")
    commission_basis_points: int = Field(500, ge=0, le=10000, description="Share of points redeemed at a merchant a volunteer brought (1/10000).")
    commission_days: int = Field(365, ge=1, description="How long after the merchant's application the commission runs.")
    min_payout_points: int = Field(100, ge=1, description="Smallest payout request.")
    job_interval_seconds: int = Field(3600, ge=0, description="How often the volunteer jobs run (0: off).")
class CommunitySettings(_Section):
    """``[community]``: households, organisations and retirements (docs/community.md)."""

    household_invite_max_hours: int = Field(
        168, ge=1, le=24 * 30, description="Longest validity of a household invite code, in hours."
    )
    organisation_invite_max_hours: int = Field(
        24 * 30, ge=1, le=24 * 365, description="Longest validity of an organisation invite code, in hours."
    )
    pool_withdrawal_expiry_days: int = Field(
        30, ge=1, le=3650,
        description="Points the owner takes from the household pool expire after this many days (so the pool "
        "cannot renew expiring points).",
    )
    retirement_points_per_kg: int = Field(
        100, ge=0, le=1_000_000,
        description="Price in points of one kg CO2e retired from the platform's pool (0: retirements are only "
        "recorded as off-platform payments). Charged per gram, rounded up.",
    )
    max_retirement_grams: int = Field(
        100_000_000, ge=1, description="Most grams CO2e one retirement may consume (100 t)."
    )
class MerchantsSettings(_Section):
    """Merchants' growth: campaigns, near me, images (docs/merchants.md)."""

    campaign_close_interval_seconds: int = Field(
        300, ge=0, description="How often the server closes ended campaigns (refunding budgets); 0 turns it off."
    )
    near_max_radius_km: float = Field(50.0, gt=0, le=500, description="Largest radius of a near-me search.")
    media_dir: str = Field("./var/media", description="Directory of the local image storage.")
    media_max_bytes: int = Field(
        800_000, ge=1000, description="Largest image upload (also bounded by limits.max_body_bytes)."
    )
    media_max_pixels: int = Field(4096 * 4096, ge=1, description="Largest width × height of an image.")
    upload_ttl_seconds: int = Field(600, ge=30, le=86400, description="How long a signed upload URL is valid.")


class ImpactSettings(_Section):
    """``[impact]``: impact figures, leaderboards, honours and challenges (docs/impact.md)."""

    green_community_grams: int = Field(
        1_000_000, ge=1,
        description="A community organisation whose members avoided at least this many grams CO2e (while "
        "members) holds the green community honour (绿色社区).",
    )
    challenge_max_days: int = Field(366, ge=1, le=3660, description="Longest challenge window, in days.")
    challenge_max_reward_points: int = Field(
        1_000_000, ge=1, description="Most points one qualifier of a challenge may be rewarded."
    )
    challenge_settle_interval_seconds: int = Field(
        60, ge=0, description="How often the server settles challenges that ended (0: never; settle by CLI)."
    )


class GraphQLSettings(_Section):
    graphiql: bool | None = Field(None, description="Serve GraphiQL; default: on in development only.")
    introspection: bool | None = Field(None, description="Allow introspection; default: on in development.")
    max_depth: int = Field(12, ge=2, description="Deepest selection set accepted.")
    max_aliases: int = Field(30, ge=1, description="Most aliases in one operation.")
    max_tokens: int = Field(5000, ge=10, description="Most lexical tokens in one document.")
    max_directives: int = Field(50, ge=1, description="Most directives in one document.")
    max_directives_per_location: int = Field(
        3, ge=1, description="Most directives on one field, fragment or operation (e.g. @include and @skip)."
    )
    get_queries: bool | None = Field(
        None,
        description="Accept queries over GET (never mutations); default: on in development only. Off in "
        "production: a GET is what a cross-site link or image sends, and nothing here needs HTTP caching.",
    )
    max_cost: int = Field(
        5000, ge=1, description="Largest static query cost (connections count first/last × their selection)."
    )
    max_page_size: int = Field(100, ge=1, le=1000, description="Largest first/last of a connection.")
    default_page_size: int = Field(20, ge=1, description="Page size when first/last are omitted.")
    batching: bool = Field(False, description="Accept batched (array) requests.")
    max_batch_operations: int = Field(10, ge=1, description="Most operations in one batch.")
    http_fast_lane: bool = Field(
        True,
        description="Answer the common request (one operation POSTed as application/json) without strawberry's "
        "generic request parsing; same responses, everything else takes the full path (jingtan_api/app.py).",
    )
    automatic_persisted_queries: bool = Field(
        True, description="Accept Apollo automatic persisted queries (a hash first, the query when unknown)."
    )
    apq_cache_size: int = Field(1000, ge=1, description="Documents remembered per process for automatic persisted queries.")
    persisted_operations_file: str | None = Field(
        None, description="Manifest of registered operations written by `jingtan operations register`."
    )
    allow_list: bool = Field(
        False, description="Run only registered operations, sent by hash or documentId (needs persisted_operations_file)."
    )
    compiled_execution: bool | None = Field(
        None,
        description="Run query operations from a plan built once per operation (jingtan_api/graphql/compiled.py) "
        "instead of graphql-core's generic per-field execution; default: on in production, off in development.",
    )


class BucketSettings(_Section):
    """A leaky bucket: holds at most ``maximum`` points and refills from empty in ``window_seconds``."""

    maximum: float = Field(..., gt=0, description="Points the bucket holds when full.")
    window_seconds: float = Field(..., gt=0, description="Seconds an empty bucket takes to refill.")

    @property
    def restore_rate(self) -> float:
        """Points restored per second."""
        return self.maximum / self.window_seconds


class LimitsSettings(_Section):
    """Abuse limits: request sizes, objects per answer, execution time and rate limits (leaky buckets)."""

    max_body_bytes: int = Field(
        1_000_000, ge=1000, description="Largest POST body or GET query string, in bytes (HTTP 413 above)."
    )
    max_document_chars: int = Field(
        100_000, ge=100, description="Longest GraphQL document, comments and whitespace included."
    )
    max_variable_list_length: int = Field(
        1000, ge=1, description="Longest list in the variables (checked before they are coerced)."
    )
    max_variable_depth: int = Field(20, ge=1, description="Deepest nesting of lists/objects in the variables.")
    max_objects: int = Field(
        50_000, ge=1, description="Most objects one answer may contain, counted while executing."
    )
    execution_timeout_seconds: float = Field(
        30.0, gt=0, description="Time one operation may execute before it is aborted (TIMEOUT)."
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db shared by all API processes for rate limits; unset: per process.",
    )
    redis_key_prefix: str = Field("jingtan:rl:", description="Prefix of the rate-limit keys in Redis.")
    rate_limiting: bool = Field(True, description="Apply the rate-limit buckets below.")
    query: BucketSettings = Field(
        default_factory=lambda: BucketSettings(maximum=10_000, window_seconds=20),
        description="Query cost points per client (user, API token, or address when anonymous).",
    )
    login: BucketSettings = Field(
        default_factory=lambda: BucketSettings(maximum=20, window_seconds=300),
        description="login mutations per client address (successes and failures).",
    )
    registration: BucketSettings = Field(
        default_factory=lambda: BucketSettings(maximum=10, window_seconds=3600),
        description="register mutations per client address.",
    )
    registration_global: BucketSettings = Field(
        default_factory=lambda: BucketSettings(maximum=1000, window_seconds=3600),
        description="register mutations of all clients together.",
    )
    submit_action: BucketSettings = Field(
        default_factory=lambda: BucketSettings(maximum=60, window_seconds=3600),
        description="submitAction mutations per client (user, API token or address).",
    )


class IdentitySettings(_Section):
    """One-time codes, their senders, verified contacts, consent versions, data export and deletion
    (docs/identity.md)."""

    require_verified_contact: bool = Field(
        True, description="Members must verify a phone or email before they earn points or redeem offers."
    )
    code_ttl_seconds: int = Field(300, ge=60, le=3600, description="Lifetime of a one-time code.")
    code_max_attempts: int = Field(
        5, ge=1, le=20, description="Wrong entries of one code (all server processes together) before it is void."
    )
    code_resend_interval_seconds: int = Field(
        60, ge=0, description="Shortest time between two codes sent to one phone number or email address."
    )
    code_window_seconds: int = Field(3600, ge=60, description="Window of the two limits below.")
    codes_per_destination: int = Field(5, ge=1, description="Codes per phone number or email address per window.")
    codes_per_address: int = Field(20, ge=1, description="Codes requested from one client address per window.")
    sms_sender: str = Field(
        "development", description="Message sender for SMS: development, http_gateway, or a plugin's sender name."
    )
    email_sender: str = Field("development", description="Message sender for email (same names).")
    development_outbox_file: str | None = Field(
        None, description="The development sender also appends each message as a JSON line to this file."
    )
    sms_gateway_url: str | None = Field(
        None, description="https URL the http_gateway sender POSTs to (JSON: to, templateId, params)."
    )
    sms_gateway_key: str = Field("", description="Bearer key of the SMS gateway.")
    sms_gateway_template_id: str = Field("", description="Template id of the code message at the gateway.")
    sms_gateway_notice_template_id: str = Field(
        "", description="Template id of the notice sent to an old number after a phone change (default: the code template)."
    )
    sms_gateway_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Timeout of one gateway request.")
    terms_version: str = Field("2026-12-01", min_length=1, max_length=32, description="Current terms of service version.")
    privacy_version: str = Field("2026-12-01", min_length=1, max_length=32, description="Current privacy notice version.")
    export_link_ttl_seconds: int = Field(
        86400, ge=60, le=7 * 86400, description="Lifetime of a data export's download link (it works once)."
    )
    exports_per_day: int = Field(3, ge=1, description="Data exports one member may request per 24 hours.")
    public_base_url: str = Field(
        "", description="Origin put before download links (e.g. https://api.example.cn); empty: relative links."
    )
    deletion_cooling_off_days: int = Field(
        15, ge=0, le=90, description="Days between a confirmed deletion request and the deletion (cancellable)."
    )
    donation_target: str = Field(
        "public_good", description="Where DONATE sends a deleted account's balance (a registered donation target)."
    )


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address `jingtan serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `jingtan serve` binds.")
    workers: int = Field(1, ge=1, description="Worker processes of `jingtan serve` (PostgreSQL for >1).")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_format: bool = Field(True, alias="json", description="One JSON object per line.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MetricsSettings(_Section):
    enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics` (off the GraphQL path).")
    token: str = Field(
        "",
        description="Bearer token `/metrics` requires (empty: none). In production `/metrics` answers 404 unless a token is set "
        "(or the scraper's direct address is in `allow_from`).",
    )
    allow_from: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) whose direct connections may scrape without the token, e.g. "
        "[\"10.0.5.0/24\"]; never the reverse proxy's own address.",
    )
    ledger_refresh_seconds: float = Field(
        60.0, ge=0, description="How long the ledger totals gauges are reused before one query refreshes them."
    )

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (CIDR such as 10.0.5.0/24)") from None
        return value
    max_operation_names: int = Field(
        200, ge=1, description="Distinct operation names labelled per process; later names count as `other`."
    )


class JobsSettings(_Section):
    enabled: bool = Field(True, description="This process takes part in running periodic jobs.")
    lease_seconds: float = Field(
        60.0, gt=0, description="Lease a worker takes on a job; renewed every third of it while the job runs."
    )
    poll_seconds: float = Field(5.0, gt=0, description="How often a worker looks for due jobs.")


class OperationsSettings(_Section):
    """Metrics, job runner, shutdown and slow-operation log (see docs/operations.md)."""

    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    shutdown_drain_seconds: float = Field(
        5.0, ge=0, description="After SIGTERM, /readyz answers 503 this long (new requests still served) "
        "before the server stops accepting; then in-flight requests finish."
    )
    graceful_timeout_seconds: float = Field(
        30.0, gt=0, description="How long `jingtan serve` lets in-flight requests finish after it stops accepting."
    )
    slow_operation_ms: float = Field(
        1000.0, ge=0, description="Operations slower than this are logged (name, cost, duration, SQL count); 0 logs all."
    )
    gc_tuning: bool | None = Field(
        None,
        description="At startup, move what the app has built (schema, plans' code, caches) out of the garbage "
        "collector's sight (gc.freeze) and collect the young generation less often (gc_thresholds): the "
        "collector's passes over the schema's objects took more CPU than the requests. Default: on in "
        "production, off in development.",
    )
    gc_thresholds: tuple[int, int, int] = Field(
        (50_000, 20, 100),
        description="gc.set_threshold values used with gc_tuning (allocations before a young collection, "
        "then the older generations' counts).",
    )

    @field_validator("gc_thresholds")
    @classmethod
    def _positive_thresholds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(v < 1 for v in value):
            raise ValueError("gc_thresholds must be three positive integers")
        return value


class MethodologiesSettings(_Section):
    require_methodology_approval: bool | None = Field(
        None,
        description="Credit an action only when its methodology version is APPROVED by an expert; until then "
        "verified actions wait in PENDING_METHODOLOGY. Default: on in production, off in development (versions "
        "are still registered and shown).",
    )
    credit_batch_size: int = Field(100, ge=1, le=10000, description="Waiting actions read per batch when crediting.")
    credit_interval_seconds: int = Field(
        300, ge=0, description="Credit actions waiting for an approved version (a safety net; 0 turns it off)."
    )


class PluginsSettings(BaseModel):
    """Which action plugins are enabled; a [plugins.<code>] table holds each plugin's own settings."""

    model_config = ConfigDict(extra="allow")

    enabled: list[str] = Field(
        default_factory=lambda: ["transit", "recycling", "energy_saving"],
        description="Codes of the enabled action plugins (entry points of group jingtan.plugins).",
    )
    timeout_seconds: float = Field(5.0, gt=0, description="Time a plugin's verify/calculate may take.")

    def settings_for(self, code: str) -> dict[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(code, {})
        return dict(value) if isinstance(value, dict) else {}


class WebhooksSettings(_Section):
    """``[webhooks]``: signed webhooks for partners (docs/live.md)."""

    interval_seconds: int = Field(5, ge=0, description="How often the delivery job runs (0: never).")
    max_attempts: int = Field(8, ge=1, le=50, description="Attempts before a delivery is FAILED.")
    base_backoff_seconds: float = Field(10.0, ge=0, description="First retry delay; doubles per attempt, with jitter.")
    max_backoff_seconds: float = Field(3600.0, ge=0, description="Longest delay between two attempts.")
    timeout_seconds: float = Field(10.0, gt=0, le=60, description="Connect/read/write timeout of one POST.")
    max_response_bytes: int = Field(4096, ge=0, le=4096, description="Response body kept per attempt (truncated).")
    allow_private_addresses: bool | None = Field(
        None, description="Allow endpoint URLs on private, loopback or reserved addresses. Default: allowed in "
        "development, refused in production.",
    )


class LiveSettings(_Section):
    """``[live]``: GraphQL subscriptions over WebSocket (graphql-transport-ws) and the broker that carries
    committed events between API processes (docs/live.md)."""

    enabled: bool = Field(True, description="Accept WebSocket subscriptions on /graphql.")
    broker: Literal["auto", "memory", "postgresql", "redis"] = Field(
        "auto",
        description="auto: redis when redis_url is set, else PostgreSQL LISTEN/NOTIFY on PostgreSQL, else memory "
        "(one process).",
    )
    redis_url: str | None = Field(None, description="redis://host:port/db for the redis broker (pub/sub).")
    queue_size: int = Field(100, ge=1, le=10_000, description="Messages one subscription may have waiting; "
                            "a subscriber that falls further behind is dropped (close code 4008).")
    max_connections_per_process: int = Field(10_000, ge=1, description="WebSocket connections one process accepts.")
    max_connections_per_member: int = Field(5, ge=1, le=100, description="Connections of one member in one process.")
    max_subscriptions_per_connection: int = Field(20, ge=1, le=200, description="Subscriptions one connection may run.")
    connection_init_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Time a client has to send connection_init after connecting (else 4408)."
    )
    heartbeat_seconds: float = Field(
        25.0, ge=0, le=600,
        description="The server pings every so often and closes a connection that answered no ping for two "
        "intervals (4030); 0: no server pings.",
    )


class NotificationsSettings(_Section):
    """``[notifications]``: members' notices of expiring points and redemption codes (docs/live.md)."""

    points_expiring_days: int = Field(
        7, ge=1, le=365, description="Notify a member of points expiring within this many days (whole local days)."
    )
    redemption_expiring_hours: int = Field(
        24, ge=1, le=24 * 365, description="Notify a member of a pending redemption code expiring within this many hours."
    )
    interval_seconds: int = Field(3600, ge=0, description="How often the notifications job runs (0: never).")
    batch_size: int = Field(
        500, ge=1, le=10000, description="Notices of each kind one run creates at most (and candidates read per batch)."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JINGTAN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    mode: Literal["development", "production"] = Field(
        "development", description="production: GraphiQL and introspection off, a real secret key required."
    )
    secret_key: str = Field(DEFAULT_SECRET_KEY, description="Signs access tokens; required in production.")
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/jingtan.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://…",
    )
    database_pool_size: int = Field(10, ge=1, description="Connections per process (PostgreSQL).")
    database_echo: bool = Field(False, description="Log every SQL statement (debugging).")
    sqlite_busy_timeout_ms: int = Field(30000, ge=0, description="How long SQLite waits for the write lock.")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    points: PointsSettings = Field(default_factory=PointsSettings)
    offers: OffersSettings = Field(default_factory=OffersSettings)
    graphql: GraphQLSettings = Field(default_factory=GraphQLSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)
    volunteers: VolunteersSettings = Field(default_factory=VolunteersSettings)
    community: CommunitySettings = Field(default_factory=CommunitySettings)
    merchants: MerchantsSettings = Field(default_factory=MerchantsSettings)
    methodologies: MethodologiesSettings = Field(default_factory=MethodologiesSettings)
    impact: ImpactSettings = Field(default_factory=ImpactSettings)
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    notifications: NotificationsSettings = Field(default_factory=NotificationsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_rules(self) -> "Settings":
        if self.mode == "production":
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
                raise ValueError(
                    "production mode needs JINGTAN_SECRET_KEY set to a random value of 32+ characters"
                )
        return self

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def graphiql_enabled(self) -> bool:
        return (not self.is_production) if self.graphql.graphiql is None else self.graphql.graphiql

    @property
    def get_queries_enabled(self) -> bool:
        return (not self.is_production) if self.graphql.get_queries is None else self.graphql.get_queries

    @property
    def introspection_enabled(self) -> bool:
        if self.graphql.introspection is None:
            return not self.is_production
        return self.graphql.introspection

    @property
    def gc_tuning_enabled(self) -> bool:
        flag = self.operations.gc_tuning
        return self.is_production if flag is None else flag

    @property
    def compiled_execution_enabled(self) -> bool:
        flag = self.graphql.compiled_execution
        return self.is_production if flag is None else flag

    @property
    def methodology_approval_required(self) -> bool:
        flag = self.methodologies.require_methodology_approval
        return self.is_production if flag is None else flag

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def config_file() -> str | None:
    """The TOML file settings are read from: ``$JINGTAN_CONFIG`` (which must exist), else ``./jingtan.toml``
    when it exists, else none."""
    path = os.environ.get("JINGTAN_CONFIG")
    if path:
        if not Path(path).is_file():
            raise ConfigurationError(f"JINGTAN_CONFIG names {path!r}, which is not a file")
        return path
    return DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else None


_SOURCE_FIELD = re.compile(r'field "(?P<field>\w+)" from source "(?P<source>\w+)"')


def _env_problem(exc: SettingsError) -> str:
    """Which ``JINGTAN_*`` variable could not be parsed (pydantic-settings names only the field): lists
    and tables given in the environment must be JSON."""
    match = _SOURCE_FIELD.search(str(exc))
    if match is None or match["source"] != "EnvSettingsSource":
        return " ".join(str(exc).split())
    prefix = f"JINGTAN_{match['field'].upper()}"
    names = sorted(k for k in os.environ if k.upper() == prefix or k.upper().startswith(prefix + "__"))

    def is_json(value: str) -> bool:
        try:
            json.loads(value)
        except ValueError:
            return False
        return True

    bad = [k for k in names if not is_json(os.environ[k])] or names or [prefix]
    return (
        f"{', '.join(bad)}: not valid JSON (lists and tables in environment variables are written as JSON, "
        f"e.g. JINGTAN_PLUGINS__ENABLED='[\"transit\", \"recycling\"]')"
    )


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning every configuration mistake (invalid values, unknown keys, a TOML syntax
    error, an environment variable that is not valid JSON) into one readable ConfigurationError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"invalid configuration: {config_file()}: TOML syntax error: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"invalid configuration: {config_file()}: not UTF-8 text") from None
    except SettingsError as exc:
        raise ConfigurationError(f"invalid configuration: {_env_problem(exc)}") from None


def _toml_value(value: Any) -> str:
    import json as _json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def _toml_key(key: str) -> str:
    import re as _re

    return key if _re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _toml_value(value)


def _render_model(table: str, model: BaseModel, doc: str | None = None) -> list[str]:
    """One TOML table for a settings model: every field with its description and default."""
    lines = ["", f"[{table}]"]
    doc = doc if doc is not None else (type(model).__doc__ or "").strip()
    if doc:
        lines += [f"# {line.strip()}" for line in doc.splitlines() if line.strip()]
    dumped = model.model_dump(mode="json", by_alias=True)
    fields = type(model).model_fields
    for name, field in fields.items():
        key = field.alias or name
        value = dumped.get(key)
        if field.description:
            lines.append(f"# {field.description}")
        if value is None:
            lines.append(f"# {key} = (unset: see description)")
        else:
            lines.append(f"{_toml_key(key)} = {_inline(value)}")
    return lines


def example_toml(plugin_settings: dict[str, BaseModel] | None = None) -> str:
    """The documented configuration file: every key with its default (``jingtan config example``).

    ``plugin_settings`` adds a ``[plugins.<code>]`` table per enabled plugin, from its settings model."""
    lines = [
        "# Jingtan API configuration. Every key is shown with its default value.",
        "# Copy to jingtan.toml (read from the working directory) or point JINGTAN_CONFIG at it.",
        "# Environment variables override the file: JINGTAN_<KEY>, nested keys joined with __,",
        "# e.g. JINGTAN_DATABASE_URL, JINGTAN_AUTH__ACCESS_TOKEN_TTL_SECONDS=600.",
        "",
    ]
    defaults = Settings.model_construct()
    sections: list[tuple[str, BaseModel]] = []
    for name, field in Settings.model_fields.items():
        value = getattr(defaults, name, field.get_default(call_default_factory=True))
        if isinstance(value, BaseModel):
            sections.append((name, value))
            continue
        if field.description:
            lines.append(f"# {field.description}")
        if value is None:
            lines.append(f"# {name} = (unset)")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, value in sections:
        lines += _render_model(name, value)
    for code, model in sorted((plugin_settings or {}).items()):
        lines += _render_model(f"plugins.{code}", model, doc=f"Settings of the {code!r} action plugin.")
    return "\n".join(lines).rstrip() + "\n"
