"""Unit tests of the core (app.services): services called with an Actor and a session."""
