"""Metrics (Prometheus), traces (OpenTelemetry) and the slow-operation log; see docs/operations.md.

``metrics`` and ``tracing`` import neither the domains nor GraphQL, so ``db.py`` and the services may
use them; ``graphql`` (the schema extension) and ``ledger`` (the ledger gauges) sit above the domains.
"""
