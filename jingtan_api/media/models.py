"""Tables of uploaded images and what they illustrate."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class MediaAsset(SQLModel, table=True):
    """One stored image, named by the SHA-256 of its bytes (the same image uploaded twice is one asset)."""

    __tablename__ = "media_asset"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True)
    content_type: str = Field(max_length=32)
    extension: str = Field(max_length=8)
    width: int
    height: int
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    uploaded_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


class MediaLink(SQLModel, table=True):
    """The current image of one slot (LOGO, COVER) of a merchant or an offer."""

    __tablename__ = "media_link"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id", "slot", name="uq_media_link_owner_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_type: str = Field(max_length=16)  # MERCHANT, OFFER
    owner_id: int
    slot: str = Field(max_length=16)  # LOGO, COVER
    asset_id: int = Field(foreign_key="media_asset.id", index=True)
    updated_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow)
