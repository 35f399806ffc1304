"""Intent analysis (issue 3): what the player felt during an in-game event they announced.

``summary`` turns a timeline slice into numbers, ``prompt`` into the LLM's question, ``backends``
asks Ollama (or an embedded model, or nothing), ``store`` keeps every job and result on disk, and
``service.AnalysisService`` ties them together for the daemon's server thread.
"""

from daemon.analysis.backends import (
    EmbeddedBackend,
    LLMFailure,
    LLMResult,
    OllamaBackend,
    Selection,
    select_backend,
)
from daemon.analysis.prompt import ANALYSIS_SCHEMA, DEFAULT_PROMPT_TEMPLATE, render_prompt
from daemon.analysis.service import END_RESULTS, AnalysisService
from daemon.analysis.summary import render_emotions, summarize

__all__ = [
    "ANALYSIS_SCHEMA",
    "DEFAULT_PROMPT_TEMPLATE",
    "END_RESULTS",
    "AnalysisService",
    "EmbeddedBackend",
    "LLMFailure",
    "LLMResult",
    "OllamaBackend",
    "Selection",
    "render_emotions",
    "render_prompt",
    "select_backend",
    "summarize",
]
