"""SutazAI mesh services and the runtime they share."""
