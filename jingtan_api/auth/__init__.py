"""Authentication and authorization: passwords, tokens, permissions."""
