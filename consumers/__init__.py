"""Consumers of the event stream: the stage-3 archiver and loader, and the stage-2 worker."""
