"""Log-likelihoods and greedy generations from an artifact: torch for HF folders,
llama.cpp for GGUF files. Heavy libraries are imported inside.

``loglikelihood`` follows lm-evaluation-harness's HF backend token for token: the
context and continuation are encoded together and split where the context's own
encoding ends (trailing spaces of the context move to the continuation), the input is
``(context + continuation)[-(max_length + 1):][:-1]``, and the figure is the sum of the
continuation tokens' log-probabilities, with ``is_greedy`` when each was the argmax.
The torch backend scores many requests per forward pass (right-padded, longest first);
the llama.cpp one keeps its evaluated tokens and re-evaluates only past the prefix a
request shares with the previous one (every choice of an item shares its context).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Artifact
from llmops_desktop.errors import InvalidInputError

Pair = tuple[str, str]


def _log_softmax_rows(rows: Any) -> Any:
    import numpy as np

    rows = np.asarray(rows, dtype=np.float64)
    m = rows.max(axis=-1, keepdims=True)
    return rows - (m + np.log(np.exp(rows - m).sum(axis=-1, keepdims=True)))


class Backend:
    """What a run needs from a model: log-likelihoods and greedy text."""

    engine = ""

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    def loglikelihood(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        raise NotImplementedError

    def generate(self, item: dict[str, Any], max_tokens: int) -> tuple[str, str]:
        """(the prompt as the model saw it, its greedy answer)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _cut(text: str, stops: Sequence[str]) -> str:
    for s in stops:
        if s and s in text:
            text = text[:text.index(s)]
    return text


class TorchBackend(Backend):
    engine = "torch"

    def __init__(self, path: Path, *, batch_size: int = 16, device: str = "cpu",
                 threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(device).eval()
        self.device, self.batch_size = device, max(1, batch_size)
        cfg = self.model.config
        self.max_length = int(getattr(cfg, "max_position_embeddings", 0) or 2048)
        prefix = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        self._bos_text = self.tok.decode(prefix) if prefix is not None else None

    def encode(self, text: str) -> list[int]:
        if self._bos_text and text.startswith(self._bos_text):
            return list(self.tok.encode(text, add_special_tokens=False))
        return list(self.tok.encode(text))

    def loglikelihood(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        torch = self.torch
        reqs = []
        for i, (ctx, cont) in enumerate(pairs):
            c, k = self.encode_pair(ctx, cont)
            whole = (c + k)[-(self.max_length + 1):]
            reqs.append((i, whole[:-1], whole[-len(k):]))
        reqs.sort(key=lambda r: -len(r[1]))
        out: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        with torch.inference_mode():
            for start in range(0, len(reqs), self.batch_size):
                chunk = reqs[start:start + self.batch_size]
                width = len(chunk[0][1])
                batch = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (_, inp, _) in enumerate(chunk):
                    batch[row, :len(inp)] = torch.tensor(inp, dtype=torch.long)
                logits = self.model(batch.to(self.device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
                for row, (i, inp, cont) in enumerate(chunk):
                    n, n_cont = len(inp), len(cont)
                    rows = logp[row, n - n_cont:n]
                    target = torch.tensor(cont, dtype=torch.long)
                    ll = float(rows.gather(1, target[:, None]).sum())
                    greedy = bool((rows.argmax(-1) == target).all())
                    out[i] = (ll, greedy)
        return out

    def generate(self, item: dict[str, Any], max_tokens: int) -> tuple[str, str]:
        torch = self.torch
        if item.get("messages"):
            prompt = self.tok.apply_chat_template(item["messages"], tokenize=False,
                                                  add_generation_prompt=True)
        else:
            prompt = str(item.get("prompt", ""))
        ids = torch.tensor([self.encode(prompt)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tok.eos_token_id)
        text = self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return prompt, _cut(text, item.get("stop") or ())


class LlamaCppBackend(Backend):
    engine = "llama.cpp"

    def __init__(self, path: Path, *, n_ctx: int = 2048, threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False,
                         n_threads=threads, n_threads_batch=threads, n_batch=512)
        self.max_length = self.llm.n_ctx() - 1

    def encode(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def loglikelihood(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        import numpy as np

        llm = self.llm
        out = []
        for ctx, cont in pairs:
            c, k = self.encode_pair(ctx, cont)
            inp = (c + k)[-(self.max_length + 1):][:-1]
            n_cont = len(k)
            have = list(llm.input_ids[:llm.n_tokens])
            common = 0
            for a, b in zip(have, inp):
                if a != b:
                    break
                common += 1
            common = min(common, len(inp) - 1)  # evaluate at least the last token again
            llm.n_tokens = common
            llm.eval(inp[common:])
            n = len(inp)
            rows = _log_softmax_rows(llm.scores[n - n_cont:n])
            target = np.asarray(k[-n_cont:], dtype=np.int64)
            ll = float(rows[np.arange(n_cont), target].sum())
            out.append((ll, bool((rows.argmax(-1) == target).all())))
        return out

    def generate(self, item: dict[str, Any], max_tokens: int) -> tuple[str, str]:
        stops = list(item.get("stop") or ()) or None
        if item.get("messages"):
            reply = self.llm.create_chat_completion(item["messages"], max_tokens=max_tokens,
                                                    temperature=0.0, stop=stops)
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in item["messages"])
            return prompt, str(reply["choices"][0]["message"]["content"] or "")
        prompt = str(item.get("prompt", ""))
        reply = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0,
                                           stop=stops)
        return prompt, str(reply["choices"][0]["text"])

    def close(self) -> None:
        self.llm.close()


def open_backend(artifact: Artifact, *, batch_size: int = 16, threads: int | None = None,
                 device: str = "cpu") -> Backend:
    if artifact.kind == "gguf":
        return LlamaCppBackend(artifact.path, threads=threads)
    if artifact.kind == "hf":
        return TorchBackend(artifact.path, batch_size=batch_size, device=device, threads=threads)
    raise InvalidInputError(f"{artifact.ref} is a {artifact.kind} artifact; evaluate a Hugging "
                            "Face folder or a GGUF file (merge a LoRA adapter into its base "
                            "first).")
