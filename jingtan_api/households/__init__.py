"""Households (家庭): members living together, their invites, membership history and shared points pool
(docs/community.md)."""
