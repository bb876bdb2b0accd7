"""The "eval" job: one or more artifacts over a suite version, every item stored.

Multiple-choice items are scored by log-likelihood in batches (``scoring``), generation
items by the maintained metrics (``metrics``), judged items by a deployment (``judge``).
Results are committed a batch at a time, so a cancelled or killed job loses at most one
batch, and the next job with the same request resumes the run where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import CancelledError, InvalidInputError
from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.runs import ItemResult
from llmops_desktop.evaluate.suites import SuiteVersion, iter_items, resolve_suite, verify_suite
from llmops_desktop.fields import spec
from llmops_desktop.jobs.events import Event, Log, Metric, Progress, Result
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task


@dataclass(frozen=True)
class EvalRequest(JobRequest):
    """Evaluate artifacts on a suite (``llmops eval ARTIFACT… --suite NAME``)."""

    kind: ClassVar[str] = "eval"

    artifacts: tuple[str, ...] = spec((), "Artifacts to evaluate.", label="Artifacts",
                                      exposed=False)
    suite: str = spec("", "The suite: NAME (its latest version) or NAME@VERSION.",
                      label="Suite", metavar="NAME")
    limit: int | None = spec(None, "Evaluate only the first N items.", label="Limit",
                             minimum=1, metavar="N")
    judge: str | None = spec(
        None, "The judge of judged items: a running deployment's name or an OpenAI-compatible "
        "address (http://HOST:PORT), such as the gateway's.", label="Judge", metavar="MODEL")
    judge_model: str | None = spec(
        None, "The judge's model name, for a judge that serves several (a gateway: one of its "
        "/v1/models); default: the first model it lists. Its key, if it needs one: "
        "$LLMOPS_JUDGE_API_KEY or --judge-api-key-file.", label="Judge model", metavar="NAME")
    baseline: str | None = spec(
        None, "Pairwise items compare each answer with this artifact's answer (default: the "
        "item's own 'baseline' answer).", label="Pairwise baseline", metavar="ARTIFACT")
    shots: int = spec(0, "Few-shot examples before each multiple-choice item, chosen with "
                      "--seed.", label="Shots", minimum=0, maximum=64, metavar="K")
    seed: int = spec(1234, "Seed of the few-shot choice and of the bootstrap.", label="Seed")
    batch_size: int = spec(16, "Sequences scored per forward pass (torch).",
                           label="Batch size", minimum=1, maximum=4096)
    max_tokens: int = spec(128, "Longest generated answer, in tokens.", label="Max tokens",
                           minimum=1, maximum=32768)
    threads: int | None = spec(None, "CPU threads (default: Settings → Default threads).",
                               label="Threads", minimum=1, maximum=512, metavar="N")
    device: str = spec("cpu", "Device of the torch engine (cpu, cuda, cuda:1 …).",
                       label="Device", metavar="DEVICE")

    def check(self, catalog: Catalog | None = None) -> EvalRequest:
        request = super().check()
        if not self.artifacts:
            raise InvalidInputError("Name at least one artifact to evaluate.")
        if not self.suite.strip():
            raise InvalidInputError("Choose a suite with --suite NAME ('llmops suite list').")
        if catalog is None:
            return request
        refs = tuple(catalog.resolve(a).ref for a in self.artifacts)
        suite = resolve_suite(catalog, self.suite)
        if suite.kinds.get("judged") and not self.judge:
            raise InvalidInputError(f"{suite.ref} has judged items: name a judge with --judge "
                                    "(a running deployment or http://HOST:PORT).")
        baseline = catalog.resolve(self.baseline).ref if self.baseline else None
        return replace(request, artifacts=refs, suite=suite.ref, baseline=baseline)

    def run_params(self) -> dict[str, Any]:
        """What makes two runs of an artifact comparable (and resumable as one)."""
        judge_model = {"judge_model": self.judge_model} if self.judge_model else {}
        return {"limit": self.limit, "judge": self.judge, **judge_model,
                "baseline": self.baseline, "shots": self.shots, "seed": self.seed,
                "max_tokens": self.max_tokens}


def _items(suite: SuiteVersion, limit: int | None) -> list[tuple[int, dict[str, Any]]]:
    items = list(enumerate(iter_items(suite)))
    return items[:limit] if limit else items


def _prompt_text(item: dict[str, Any]) -> str:
    if item.get("messages"):
        return "\n".join(f"{m['role']}: {m['content']}" for m in item["messages"])
    return str(item.get("prompt", ""))


def evaluate_artifact(ctx: JobContext, request: EvalRequest, artifact: Artifact,
                      suite: SuiteVersion, baseline_answers: dict[int, str] | None = None,
                      ) -> Iterator[Event]:
    from llmops_desktop.evaluate.backends import open_backend
    from llmops_desktop.evaluate.metrics import score_generation
    from llmops_desktop.evaluate.scoring import fewshot_examples, mc_context, mc_pairs, mc_scores

    items = _items(suite, request.limit)
    run, done = run_store.open_run(ctx.catalog, suite.id, artifact.id, request.run_params(),
                                   len(items), ctx.job_id)
    todo = [(i, it) for i, it in items if i not in done]
    if done:
        yield Log(f"run #{run.id}: resuming, {len(done)} of {len(items)} items already stored")
    yield Log(f"evaluating {artifact.ref} on {suite.ref}: {len(todo)} items (run #{run.id})")
    total, count = len(items), len(done)
    yield Progress(count, total, "items", f"{artifact.ref} on {suite.ref}")
    threads = request.threads or ctx.settings.default_threads
    backend = None
    judge = None
    try:
        if todo:
            backend = open_backend(artifact, batch_size=request.batch_size, threads=threads,
                                   device=request.device)
        pool = [(i, it) for i, it in enumerate(iter_items(suite)) if it["kind"] == "mc"]
        mc = [(i, it) for i, it in todo if it["kind"] == "mc"]
        per_batch = request.batch_size  # items a chunk: the torch engine packs one sequence each
        for start in range(0, len(mc), per_batch):
            chunk = mc[start:start + per_batch]
            t0 = time.perf_counter()
            pairs, spans, contexts = [], [], []
            for i, it in chunk:
                context = mc_context(it, fewshot_examples(it, i, pool, request.shots, request.seed))
                contexts.append(context)
                spans.append((len(pairs), len(pairs) + len(it["choices"])))
                pairs.extend(mc_pairs(context, it))
            lls = backend.loglikelihood(pairs)
            each = (time.perf_counter() - t0) / len(chunk)
            out = []
            for (i, it), (a, b), context in zip(chunk, spans, contexts):
                scores, details = mc_scores(it, lls[a:b])
                out.append(ItemResult(i, "mc", context, it["choices"][details["pred"]], scores,
                                      details, each))
            run_store.add_results(ctx.catalog, run.id, out)
            count += len(chunk)
            yield Progress(count, total, "items", f"{artifact.ref} on {suite.ref}")
        for i, it in todo:
            if it["kind"] == "mc":
                continue
            t0 = time.perf_counter()
            prompt, answer = backend.generate(it, int(it.get("max_tokens") or request.max_tokens))
            details: dict[str, Any] = {}
            if it["kind"] == "gen":
                scores = score_generation(answer, it)
            else:
                if judge is None:
                    judge = _open_judge(ctx, request)
                scores, details = _judge_item(judge, suite, it, answer,
                                              (baseline_answers or {}).get(i))
            out = [ItemResult(i, it["kind"], prompt or _prompt_text(it), answer, scores, details,
                              time.perf_counter() - t0)]
            run_store.add_results(ctx.catalog, run.id, out)
            count += 1
            yield Progress(count, total, "items", f"{artifact.ref} on {suite.ref}")
    except BaseException as exc:  # cancelled (SIGTERM) or failed: the next job resumes it
        # GeneratorExit: the job stopped reading (cancelled between two of our events).
        cancelled = isinstance(exc, (KeyboardInterrupt, CancelledError, GeneratorExit)) or \
            type(exc).__name__ == "_Cancelled"
        run_store.finish_run(ctx.catalog, run.id, "cancelled" if cancelled else "failed",
                             run_store.summarize_run(run_store.results(ctx.catalog, run.id)))
        raise
    finally:
        if backend is not None:
            backend.close()
    stored = run_store.results(ctx.catalog, run.id)
    extra = _corpus(stored, dict(items))
    summary = run_store.summarize_run(stored, extra)
    summary["engine"] = "llama.cpp" if artifact.kind == "gguf" else "torch"
    run = run_store.finish_run(ctx.catalog, run.id, "succeeded", summary)
    for name, s in summary["metrics"].items():
        ctx.catalog.add_evaluation(artifact.id, f"{suite.name}:{name}", s["mean"],
                                   dataset=suite.ref, dataset_sha256=suite.sha256,
                                   job_id=ctx.job_id, params={"run_id": run.id, **s})
        yield Metric(f"{artifact.ref}:{name}", s["mean"])
        yield Log(f"{artifact.ref} {name}: {s['mean']:.4f} [{s['ci_low']:.4f}, "
                  f"{s['ci_high']:.4f}] over {s['n']} items")
    yield Result({"run_id": run.id, "artifact": artifact.ref, "summary": summary})


def _corpus(stored: list[ItemResult], items: dict[int, dict[str, Any]]) -> dict[str, float]:
    from llmops_desktop.evaluate.metrics import corpus_scores

    gen = [(r.output, items[r.item_index]) for r in stored if r.kind == "gen"]
    return corpus_scores([g[0] for g in gen], [g[1] for g in gen]) if gen else {}


def _open_judge(ctx: JobContext, request: EvalRequest) -> Any:
    """The request's judge, at its address, with its model and the key from the environment."""
    import os

    from llmops_desktop.evaluate.judge import JUDGE_KEY_ENV, Judge, resolve_judge_url
    from llmops_desktop.netaddr import check_secret

    return Judge(resolve_judge_url(ctx.catalog, request.judge or ""),
                 model=(request.judge_model or "").strip(),
                 api_key=check_secret(os.environ.get(JUDGE_KEY_ENV, ""), "judge API key"))


def _judge_item(judge: Any, suite: SuiteVersion, item: dict[str, Any], answer: str,
                other: str | None) -> tuple[dict[str, float], dict[str, Any]]:
    prompts = suite.judge_prompts
    text = _prompt_text(item)
    if item.get("mode") == "pairwise":
        other = other if other is not None else item.get("baseline")
        if other is None:
            raise InvalidInputError("A pairwise item needs another answer: give the item a "
                                    "'baseline' or run with --baseline ARTIFACT.")
        verdict = judge.pairwise(prompts["pairwise"], prompt=text, answer=answer,
                                 other=str(other), rubric=item["rubric"])
        outcome = verdict["outcome"]
        scores = {} if outcome is None else {
            "pairwise_win": float(outcome == "ours"),
            "pairwise_score": {"ours": 1.0, "tie": 0.5, "other": 0.0}[outcome]}
        return scores, {"judge": judge.url, "judge_model": judge.model, "baseline_answer": other,
                        **verdict}
    verdict = judge.pointwise(prompts["pointwise"], prompt=text, answer=answer,
                              rubric=item["rubric"])
    scores = {} if verdict["score"] is None else {"judge_score": float(verdict["score"])}
    return scores, {"judge": judge.url, "judge_model": judge.model, **verdict}


def _baseline_answers(ctx: JobContext, request: EvalRequest, suite: SuiteVersion
                      ) -> Iterator[Event | dict[int, str]]:
    from llmops_desktop.evaluate.backends import open_backend

    pairwise = [(i, it) for i, it in _items(suite, request.limit)
                if it["kind"] == "judged" and it.get("mode") == "pairwise"]
    answers: dict[int, str] = {}
    if request.baseline and pairwise:
        artifact = ctx.catalog.resolve(request.baseline)
        yield Log(f"answering {len(pairwise)} pairwise items with the baseline {artifact.ref}")
        backend = open_backend(artifact, threads=request.threads or ctx.settings.default_threads,
                               device=request.device)
        try:
            for i, it in pairwise:
                answers[i] = backend.generate(it, int(it.get("max_tokens") or request.max_tokens))[1]
        finally:
            backend.close()
    yield answers


@register_task("eval", EvalRequest)
def eval_task(ctx: JobContext, request: EvalRequest) -> Iterator[Event]:
    r = request.check(ctx.catalog)
    suite = resolve_suite(ctx.catalog, r.suite)
    verify_suite(suite)
    baseline: dict[int, str] = {}
    for ev in _baseline_answers(ctx, r, suite):
        if isinstance(ev, dict):
            baseline = ev
        else:
            yield ev
    results = []
    for ref in r.artifacts:
        artifact = ctx.catalog.resolve(ref)
        for ev in evaluate_artifact(ctx, r, artifact, suite, baseline):
            if isinstance(ev, Result):
                results.append(ev.data)
            else:
                yield ev
    yield Result({"suite": suite.ref, "runs": results,
                  "run_ids": [x["run_id"] for x in results]})
