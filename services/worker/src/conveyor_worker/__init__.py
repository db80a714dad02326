"""Conveyor worker service."""
