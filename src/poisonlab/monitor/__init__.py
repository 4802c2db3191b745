"""Watching a deployed model: sliding windows of predictions against a clean baseline, drift and trigger alarms
calibrated to a stated false-alarm rate, storage through SQLAlchemy, and the HTTP service behind ``poisonlab serve``."""
