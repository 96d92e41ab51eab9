"""The offline reader as a LiteLLM custom provider, so it is called through the same path as every model."""

from __future__ import annotations

import litellm
from litellm import CustomLLM

from .reader import answer


class OfflineLLM(CustomLLM):
    def completion(self, model: str, messages: list, *args, **kwargs) -> litellm.ModelResponse:
        text = answer(messages, model)
        return litellm.ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        )
