"""``python -m app.monitor``: run the event consumer."""

from app.monitor.service import main

main()
