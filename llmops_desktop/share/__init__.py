"""Sharing models with colleagues: signed, checksummed packages, shared-folder registries,
exports that Ollama and Hugging Face tools read, and the artifact's governance status.

Plain Python, no Qt. The package format is described in :mod:`.manifest`; exporting
and importing run as jobs (``export`` and ``import-package``).
"""
