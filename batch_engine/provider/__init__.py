"""The provider's edge: the only HTTP client (client) and the only HTTP server (callbacks) of the
product; everything HTTP is turned into the engine's own exceptions (errors) here."""
