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


def _pick(torch: Any, rows: Any, cont: list[int]) -> tuple[float, bool]:
    target = torch.tensor(cont, dtype=torch.long)
    return (float(rows.gather(1, target[:, None]).sum()),
            bool((rows.argmax(-1) == target).all()))


class TorchBackend(Backend):
    engine = "torch"

    def __init__(self, path: Path, *, batch_size: int = 16, device: str = "cpu",
                 threads: int | None = None, pack: bool = True) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(device).eval()
        self.device, self.batch_size, self.pack = device, max(1, batch_size), pack
        cfg = self.model.config
        self.max_length = int(getattr(cfg, "max_position_embeddings", 0) or 2048)
        prefix = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        self._bos_text = self.tok.decode(prefix) if prefix is not None else None

    def encode(self, text: str) -> list[int]:
        if self._bos_text and text.startswith(self._bos_text):
            return list(self.tok.encode(text, add_special_tokens=False))
        return list(self.tok.encode(text))

    def loglikelihood(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        """Requests that share a context are packed into one sequence: the context once,
        then each continuation at the positions it would have, seeing the context and
        itself only (a 4D mask); the same figures as one sequence per request."""
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        plain = []
        for i, (ctx, cont) in enumerate(pairs):
            c, k = self.encode_pair(ctx, cont)
            if self.pack and c:
                groups.setdefault(tuple(c), []).append((i, k))
            else:
                plain.append((i, c, k))
        packed = []
        for c, conts in groups.items():
            if len(c) + sum(len(k) - 1 for _, k in conts) <= self.max_length:
                packed.append((list(c), conts))
            else:
                plain.extend((i, list(c), k) for i, k in conts)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        with self.torch.inference_mode():
            self._score_packed(packed, out)
            self._score_plain(plain, out)
        return out

    def _score_plain(self, plain: list[tuple[int, list[int], list[int]]],
                     out: list[tuple[float, bool]]) -> None:
        torch = self.torch
        reqs = []
        for i, c, k in plain:
            whole = (c + k)[-(self.max_length + 1):]
            reqs.append((i, whole[:-1], whole[-len(k):]))
        reqs.sort(key=lambda r: -len(r[1]))
        for start in range(0, len(reqs), self.batch_size):
            chunk = reqs[start:start + self.batch_size]
            width = len(chunk[0][1])
            batch = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (_, inp, _) in enumerate(chunk):
                batch[row, :len(inp)] = torch.tensor(inp, dtype=torch.long)
            logp = torch.log_softmax(self.model(batch.to(self.device)).logits.float(), dim=-1).cpu()
            for row, (i, inp, cont) in enumerate(chunk):
                n = len(inp)
                out[i] = _pick(torch, logp[row, n - len(cont):n], cont)

    def _score_packed(self, packed: list[tuple[list[int], list[tuple[int, list[int]]]]],
                      out: list[tuple[float, bool]]) -> None:
        torch = self.torch
        seqs = []
        for c, conts in packed:
            tokens, pos, rows, L = list(c), list(range(len(c))), [], len(c)
            for i, k in conts:
                start = len(tokens)
                tokens += k[:-1]
                pos += list(range(L, L + len(k) - 1))
                rows.append((i, k, start, [L - 1] + list(range(start, start + len(k) - 1))))
            seqs.append((tokens, pos, rows, L))
        seqs.sort(key=lambda s: -len(s[0]))
        per_batch = self.batch_size  # one sequence per context
        for b0 in range(0, len(seqs), per_batch):
            chunk = seqs[b0:b0 + per_batch]
            width = len(chunk[0][0])
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            pos = torch.zeros((len(chunk), width), dtype=torch.long)
            allow = torch.zeros((len(chunk), 1, width, width), dtype=torch.bool)
            allow[:, 0] = torch.eye(width, dtype=torch.bool)  # padding rows see themselves
            for b, (tokens, p, rows, L) in enumerate(chunk):
                ids[b, :len(tokens)] = torch.tensor(tokens)
                pos[b, :len(p)] = torch.tensor(p)
                allow[b, 0, :L, :L] = torch.tril(torch.ones(L, L, dtype=torch.bool))
                for _, k, start, _ in rows:
                    m = len(k) - 1
                    allow[b, 0, start:start + m, :L] = True
                    allow[b, 0, start:start + m, start:start + m] = torch.tril(
                        torch.ones(m, m, dtype=torch.bool))
            dtype = self.model.dtype
            mask = torch.zeros(allow.shape, dtype=dtype).masked_fill(~allow, torch.finfo(dtype).min)
            logits = self.model(ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=pos.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for b, (_, _, rows, _) in enumerate(chunk):
                for i, k, _, picks in rows:
                    out[i] = _pick(torch, logp[b, picks], k)

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
