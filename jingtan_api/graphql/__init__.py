"""GraphQL plumbing: schema assembly, relay helpers, errors, limits."""
