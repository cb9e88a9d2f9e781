"""Simulated users for non-solo episodes (scripted, LLM)."""
