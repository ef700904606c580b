"""The chat service: users' conversations with the models, stored, trimmed and cached."""
