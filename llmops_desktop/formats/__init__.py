"""Readers that validate weight files and pull metadata out of them."""
