"""Conveyor notifier service."""
