"""Users: registration, profiles and roles."""
