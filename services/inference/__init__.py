"""The inference service: language models behind one API (embedded llama.cpp, Ollama, OpenAI)."""
