"""Serving: one OpenAI-compatible HTTP server process per deployment.

``engines`` (llama.cpp, torch; a registry for more) turn prompts into text; ``app`` is the
FastAPI side (OpenAI wire format, bounded queue, metrics); ``recorder`` and ``store`` keep
deployments and the request log in the catalog; ``run.serve`` binds and blocks. FastAPI,
uvicorn and the engines' libraries load only when those modules are imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmops_desktop.serving.run import serve

__all__ = ["serve"]


def __getattr__(name: str):  # lazy: importing the package must not load FastAPI/uvicorn
    if name == "serve":
        from llmops_desktop.serving.run import serve

        return serve
    raise AttributeError(name)
