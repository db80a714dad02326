"""Conveyor api service."""
