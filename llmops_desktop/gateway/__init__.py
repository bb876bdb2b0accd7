"""One address for the team: a gateway that serves every model the policy allows.

Models are loaded on demand (one deployment process each, :mod:`.pool`), unloaded when
idle or when memory is needed; callers use per-person API keys (:mod:`.keys`) with a scope
and limits (:mod:`.limits`); every request is logged with the key's name and the model
(:mod:`.usage`). ``llmops gateway`` and ``llmops apikey`` are in :mod:`.commands`.
"""
