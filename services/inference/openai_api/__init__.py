"""The OpenAI-compatible API at ``/openai/v1``: an HTTP adapter onto the inference service."""
