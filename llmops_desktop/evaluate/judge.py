"""A deployment as the judge: any OpenAI-compatible server, by address or deployment name.

A gateway (one address, many models, a key per person) judges too: the request names the
judge's model (``--judge-model``), and the key comes from ``$LLMOPS_JUDGE_API_KEY`` (set by
``--judge-api-key-file`` or the Run tab's key field for the job's child alone), never from a
command line or the job's stored parameters.

Pointwise: the judge rates one answer 1–10 with a reason. Pairwise: the judge sees the
model's answer and another one twice, once in each order, and a win counts only when
both orders agree (position bias cancels; a split is a tie). The prompts come from the
suite version, so a run is judged by exactly what was versioned.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate.errors import JudgeError

_SCORE = re.compile(r"\"?score\"?\s*[:=]\s*\"?(10|[1-9])\b", re.I)
_WINNER = re.compile(r"\"?winner\"?\s*[:=]\s*\"?(A|B|tie)\b", re.I)
JUDGE_KEY_ENV = "LLMOPS_JUDGE_API_KEY"  # the eval job's child reads the judge's key here
MAX_REPLY_BYTES = 4 << 20  # a judge's answer is short; a longer one is refused


def judge_secrets(api_key: str) -> dict[str, str]:
    """The judge's key as the eval job's child receives it: ``$LLMOPS_JUDGE_API_KEY`` in its
    environment (``runner.spawn(secrets=...)``), never its command line or job row. An
    empty key gives nothing."""
    if not api_key:
        return {}
    from llmops_desktop.netaddr import check_secret

    return {JUDGE_KEY_ENV: check_secret(api_key, "judge API key")}


def resolve_judge_url(catalog: Catalog, judge: str) -> str:
    """``judge`` as a base address: itself when it is one, else a running deployment's."""
    text = judge.strip().rstrip("/")
    if text.startswith(("http://", "https://")):
        return text[:-3] if text.endswith("/v1") else text
    from llmops_desktop.serving.store import deployments

    for d in deployments(catalog):
        if d.name == text and d.state == "running" and d.url:
            return d.url.rstrip("/")
    raise JudgeError(f"No running deployment named {text!r} to judge with. Start one with "
                     f"'llmops serve MODEL --name {text}', or give the judge's address "
                     "(http://HOST:PORT).")


@dataclass
class Judge:
    url: str
    model: str = ""
    timeout: float = 120.0
    max_tokens: int = 128
    api_key: str = field(default="", repr=False)  # sent as Bearer; never logged or stored

    def _post(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read(MAX_REPLY_BYTES + 1)
            if len(raw) > MAX_REPLY_BYTES:
                raise ValueError(f"its answer is over {MAX_REPLY_BYTES >> 20} MiB")
            return json.loads(raw)
        except urllib.error.HTTPError as exc:
            hint = ""
            if exc.code in (401, 403):
                hint = (f" Give the judge a key it accepts: set {JUDGE_KEY_ENV}, pass "
                        "--judge-api-key-file FILE, or fill in the Run tab's Judge key.")
            raise JudgeError(f"The judge at {self.url} answered {exc.code}: "
                             f"{exc.read(300).decode('utf-8', 'replace')}{hint}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise JudgeError(f"Cannot ask the judge at {self.url}: {exc}. Is it running?") from None

    def model_name(self) -> str:
        if not self.model:
            data = self._post("/v1/models", None).get("data") or []
            self.model = str(data[0]["id"]) if data else "judge"
        return self.model

    def ask(self, prompt: str) -> str:
        reply = self._post("/v1/chat/completions", {
            "model": self.model_name(), "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": self.max_tokens})
        return str(reply["choices"][0]["message"].get("content") or "")

    def pointwise(self, template: str, *, prompt: str, answer: str, rubric: str) -> dict[str, Any]:
        text = template.format(prompt=prompt, answer=answer, rubric=rubric)
        reply = self.ask(text)
        m = _SCORE.search(reply) or re.search(r"\b(10|[1-9])\b", reply)
        score = int(m.group(1)) if m else None
        return {"judge_prompt": text, "judge_reply": reply, "score": score,
                "reason": _reason(reply)}

    def pairwise(self, template: str, *, prompt: str, answer: str, other: str,
                 rubric: str) -> dict[str, Any]:
        """The answer under test against ``other``, asked in both orders."""
        orders = []
        for first, second, ours in ((answer, other, "A"), (other, answer, "B")):
            text = template.format(prompt=prompt, answer_a=first, answer_b=second, rubric=rubric)
            reply = self.ask(text)
            m = _WINNER.search(reply)
            verdict = m.group(1).upper() if m else None
            won = None if verdict is None else ("tie" if verdict == "TIE"
                                               else "ours" if verdict == ours else "other")
            orders.append({"judge_prompt": text, "judge_reply": reply, "verdict": verdict,
                           "ours_is": ours, "outcome": won})
        a, b = orders[0]["outcome"], orders[1]["outcome"]
        final = a if a == b and a is not None else ("tie" if a and b else None)
        return {"orders": orders, "outcome": final}


def _reason(reply: str) -> str:
    m = re.search(r"\"reason\"\s*:\s*\"(.*?)\"", reply, re.S)
    return m.group(1) if m else reply.strip()[:500]
