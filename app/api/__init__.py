"""The REST edge: flask-smorest blueprints over ``app.services``."""
