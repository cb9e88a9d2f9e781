"""Policies: Agents SDK `Model`s that drive the agent (oracle, noisy-oracle, openai)."""
