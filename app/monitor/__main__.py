"""``python -m app.monitor``: run the event consumer."""

from app.monitor.process import main

main()
