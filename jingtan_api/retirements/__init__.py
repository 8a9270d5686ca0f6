"""Retiring verified reductions (碳中和/抵消): a company organisation buys approved, un-retired CO2e from the
platform's pool and retires it against a stated purpose (docs/community.md)."""
