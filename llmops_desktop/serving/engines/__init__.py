"""Inference engines behind one interface; see :mod:`.base`."""

from llmops_desktop.serving.engines.base import (
    ChatTemplateMissingError,
    Engine,
    EngineSettings,
    Piece,
    PromptTokens,
    SamplingParams,
    engine_names,
    get_engine,
    register_engine,
)

__all__ = ["ChatTemplateMissingError", "Engine", "EngineSettings", "Piece", "PromptTokens",
           "SamplingParams", "engine_names", "get_engine", "register_engine"]
