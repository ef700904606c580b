"""The built-in text agent: text.generate and text.summarize on the inference service."""
