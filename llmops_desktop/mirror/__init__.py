"""The team mirror: the catalog's READY artifacts, read-only, over the Hugging Face hub API.

``HF_ENDPOINT=http://HOST:PORT`` lets huggingface_hub, the ``hf`` CLI, transformers and
our own downloader fetch models from a colleague's machine with no internet.
``repos`` maps the catalog to repos and revisions (no web framework); ``server``
answers HTTP; ``run.serve`` binds and blocks. FastAPI and uvicorn load only when
``server``/``run`` are imported, never at the app's start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmops_desktop.mirror.run import serve

__all__ = ["serve"]


def __getattr__(name: str):  # lazy: importing the package must not load FastAPI/uvicorn
    if name == "serve":
        from llmops_desktop.mirror.run import serve

        return serve
    raise AttributeError(name)
