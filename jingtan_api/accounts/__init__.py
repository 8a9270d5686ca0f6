"""Accounts and the double-entry points ledger."""
