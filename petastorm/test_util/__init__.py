"""Helpers for testing code that uses petastorm readers (public, as in the original library)."""
