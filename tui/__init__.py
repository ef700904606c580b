"""Textual operator dashboard."""
