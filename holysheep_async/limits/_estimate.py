"""A request's token cost, estimated before it is sent (for a tokens-per-minute limit)."""

from __future__ import annotations

__all__ = ["estimate_tokens"]


def estimate_tokens(body: dict[str, object]) -> int:
    """A request's token cost estimated before sending: prompt estimate plus ``max_tokens``.

    The prompt is counted at about four characters per token (no tokenizer
    download); the answer at ``max_completion_tokens`` / ``max_tokens``, or 256
    when neither is set, times ``n`` choices. The real usage corrects it
    afterwards (``Permit.reconcile``).
    """
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    chars += len(content)
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            chars += len(part["text"])
                chars += 16  # role and framing
    answer = body.get("max_completion_tokens") or body.get("max_tokens")
    out = answer if isinstance(answer, int) and answer > 0 else 256
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        out *= n
    return chars // 4 + 1 + out
