"""The task service: the record of every task and attempt, and their dispatch over JetStream."""
