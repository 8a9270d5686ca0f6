"""Identity and privacy: one-time codes and their senders, verified contacts, login by code, password
reset, the member's sessions, data export and account deletion under PIPL (docs/identity.md)."""
