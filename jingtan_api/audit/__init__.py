"""Audit log of administrative actions (who, what, when, why)."""
