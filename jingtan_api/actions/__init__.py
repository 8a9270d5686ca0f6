"""Low-carbon actions: submissions verified by plugins, credited on the ledger (docs/actions.md, docs/architecture.md "Plugins")."""
