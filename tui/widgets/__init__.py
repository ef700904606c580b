"""Reusable widgets of the dashboard's screens."""
