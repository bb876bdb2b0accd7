"""Versioned prompts: a named catalog item (system prompt, a message template with
``{{variables}}``, sampling settings, an optional response schema, the artifact it was
written for) whose versions never change and whose aliases (``prod``, ``candidate``) move.
A deployment serves one by name: ``"model": "prompt:NAME@ALIAS"``.
"""

from __future__ import annotations

from llmops_desktop.prompts.store import (
    PromptVersion,
    choose,
    create_prompt,
    list_prompts,
    resolve_prompt,
    set_alias,
)
from llmops_desktop.prompts.templates import fill, variables

__all__ = ["PromptVersion", "choose", "create_prompt", "fill", "list_prompts", "resolve_prompt",
           "set_alias", "variables"]
