"""Images of merchants and offers (logo, cover): verified uploads behind a storage interface."""
