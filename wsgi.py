"""WSGI entry point: ``gunicorn wsgi:app``."""

from app.api.app import create_app

app = create_app()
