"""Bring models in from a Hugging Face hub or an HF-compatible mirror."""
