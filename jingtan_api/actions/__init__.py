"""Low-carbon actions: submissions verified by plugins, credited on the ledger (DESIGN.md §3)."""
