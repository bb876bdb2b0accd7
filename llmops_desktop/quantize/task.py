"""The "quantize" job: one parent artifact to one or more variants, quality measured.

HF parents are converted by llama.cpp's converter (straight to F16, BF16 or Q8_0, or
to an F16 intermediate that the k-quants are made from, kept as an artifact of its
own when asked); GGUF parents are quantized by llama.cpp; ``bnb-*`` targets save a
bitsandbytes checkpoint. Every variant is registered as a child of what it was made
from, with the exact parameters and tool versions, and its perplexity on the same
held-out text is recorded beside its parent's, with the KL divergence and top-1 token
agreement of each GGUF variant against the parent on the same token ids
(quantize/kl.py).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import DiskFullError, DuplicateArtifactError, InvalidInputError
from llmops_desktop.jobs.events import Event, Log, Metric, Progress, Result
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task
from llmops_desktop.quantize.targets import (
    BNB_MODES,
    GGUF_TARGETS,
    NEEDS_IMATRIX,
    bits_of,
    estimate,
    normalize_target,
)

BNB_PREFIX = "bnb-"


@dataclass(frozen=True)
class QuantizeRequest(JobRequest):
    """Make variants of one artifact (``llmops quantize``, the Quantize dialog)."""

    kind: ClassVar[str] = "quantize"

    artifact_id: int = spec(description="The artifact to quantize.", label="Artifact",
                            exposed=False)
    targets: tuple[str, ...] = spec(
        (), "Target type (repeatable): Q4_K_M, Q8_0, F16, bnb-nf4, …", label="Targets",
        flag="--to", metavar="TARGET")
    keep_intermediate: bool = spec(
        False, "Keep the F16 GGUF made on the way from a Hugging Face model as an artifact of "
        "its own, to quantize again later without converting again.",
        label="Keep the F16 intermediate", flag="--keep-f16")
    threads: int | None = spec(
        None, "CPU threads llama.cpp uses to quantize and to measure perplexity (default: "
        "Settings → Default threads).", label="Threads", minimum=1, maximum=512, metavar="N")
    eval_text: str | None = spec(
        None, "Held-out UTF-8 text the perplexity of the parent and of each variant is "
        "measured on, so their figures compare (default: the English text shipped with the "
        "app).", label="Evaluation text", metavar="FILE")
    evaluate: bool = spec(
        True, "Measure perplexity of the parent and each variant, and each GGUF variant's KL "
        "divergence and top-1 token agreement against the parent (off saves time on big "
        "models).", label="Measure perplexity", flag="--eval")
    force: bool = spec(
        False, "Allow requantizing to a higher precision than the parent has.",
        label="Quantize anyway")
    n_ctx: int = spec(512, "Context of the perplexity measurement, in tokens.",
                      label="Evaluation context", minimum=16, maximum=1 << 20, exposed=False)

    def check(self, catalog: Catalog | None = None) -> QuantizeRequest:
        """Field bounds, the evaluation text is a file (made absolute), and with the
        catalog the targets planned against the parent (normalised)."""
        request = super().check()
        if self.eval_text:
            path = Path(self.eval_text).expanduser()
            if not path.is_file():
                raise InvalidInputError(
                    f"The evaluation text {self.eval_text} is not a file. Choose a UTF-8 text "
                    "file, or leave it out to use the shipped text.")
            request = replace(request, eval_text=str(path.resolve()))
        if catalog is not None:
            parent = catalog.artifact(self.artifact_id)
            request = replace(request, targets=tuple(
                plan_targets(parent, self.targets, force=self.force)))
        elif not self.targets:
            raise InvalidInputError("Choose at least one target, e.g. --to Q4_K_M.")
        return request


def plan_targets(parent: Artifact, targets: Sequence[str], *, force: bool = False) -> list[str]:
    """Check the requested targets against the parent; raise a clear error for any that
    cannot or should not be made. Returns them normalized, in the order given."""
    out: list[str] = []
    for raw in targets:
        t = normalize_target(raw)
        if t in out:
            continue
        if t in NEEDS_IMATRIX:
            raise InvalidInputError(f"{t} needs an importance matrix, which this app does not "
                                    "compute yet. Choose IQ3_XXS or larger.")
        if t.startswith(BNB_PREFIX):
            if t not in BNB_MODES:
                raise InvalidInputError(f"Unknown bitsandbytes mode {t}; one of {', '.join(BNB_MODES)}.")
            if parent.kind != "hf":
                raise InvalidInputError(f"bitsandbytes quantizes Hugging Face models; "
                                        f"{parent.ref} is a {parent.kind} artifact.")
        elif t not in GGUF_TARGETS:
            raise InvalidInputError(f"Unknown target {raw!r}. Known: "
                                    + ", ".join([*GGUF_TARGETS, *BNB_MODES]))
        elif parent.kind == "lora":
            raise InvalidInputError("A LoRA adapter is quantized after merging it into its base.")
        elif parent.kind == "gguf":
            have = str(parent.metadata.get("quantization", "")).upper()
            have_bits, want_bits = bits_of(have), GGUF_TARGETS[t].bits_per_weight
            if have_bits is not None and want_bits > have_bits + 0.01 and not force:
                raise InvalidInputError(
                    f"{parent.ref} is already quantized to {have} (~{have_bits:g} bits per "
                    f"weight). Making {t} from it cannot bring back the precision it lost: the "
                    f"result is as lossy as {have} but bigger. Quantize from the F16 or HF "
                    "parent instead, or pass --force if you really want this.")
        out.append(t)
    if not out:
        raise InvalidInputError("Choose at least one target, e.g. --to Q4_K_M.")
    return out


def _check_parent_intact(catalog: Catalog, parent: Artifact) -> None:
    """The parent's files must still be what the catalog recorded (sizes; GGUF header)."""
    from llmops_desktop.errors import CorruptFileError
    from llmops_desktop.formats.gguf_meta import read_gguf_info

    root = parent.path if parent.path.is_dir() else parent.path.parent
    for f in catalog.files(parent.id):
        path = root / f.relpath
        try:
            size = path.stat().st_size
        except OSError:
            raise CorruptFileError(f"{parent.ref} is damaged: {f.relpath} is missing from "
                                   f"{root}. Import the model again.") from None
        if size != f.size:
            raise CorruptFileError(f"{parent.ref} is damaged: {f.relpath} has {size:,} bytes, "
                                   f"the catalog recorded {f.size:,}. Import it again.")
    if parent.kind == "gguf":
        read_gguf_info(parent.path)  # raises CorruptFileError for a damaged header


def _tensor_count(parent: Artifact) -> int | None:
    """How many tensors the converter will write (from the safetensors headers)."""
    from llmops_desktop.formats.safetensors_meta import read_safetensors_info

    try:
        return sum(read_safetensors_info(p).tensors for p in parent.path.glob("*.safetensors")) or None
    except Exception:  # noqa: BLE001 - progress without a total is fine
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _check_space(folder: Path, needed: float, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + 32 * 1024 * 1024:
        raise DiskFullError(f"Not enough disk space for {what}: about {needed / 1e9:.2f} GB is "
                            f"needed and {free / 1e9:.2f} GB is free at {folder}.")


class _Quantizer:
    def __init__(self, ctx: JobContext, parent: Artifact, threads: int, eval_text: str,
                 eval_name: str, n_ctx: int) -> None:
        from llmops_desktop.quantize.llama_quant import versions

        self.ctx, self.parent, self.threads = ctx, parent, threads
        self.eval_text, self.eval_name, self.n_ctx = eval_text, eval_name, n_ctx
        self.eval_sha = hashlib.sha256(eval_text.encode()).hexdigest()
        self.versions = versions()
        self.made: list[int] = []
        self.figures: dict[str, float] = {}
        self.kl: dict[str, dict[str, Any]] = {}  # per variant label: figures, or {"error": …}
        self.reference: Any = None  # the parent's log-probabilities (kl.Reference), when needed
        self.enabled = True  # measure perplexity, KL divergence and top-1 agreement

    @property
    def catalog(self) -> Catalog:
        return self.ctx.catalog

    def register(self, path: Path, name: str, parent: Artifact, params: dict[str, Any],
                 metadata: dict[str, Any] | None = None) -> Iterator[Event]:
        """Register ``path`` (a .gguf or a folder in staging) as a child of ``parent``."""
        from llmops_desktop.importer import import_model, inspect_source

        source = inspect_source(path, name=name, allow_pickle=False)
        source = type(source)(**{**source.__dict__, "source": f"quantize:{parent.ref}",
                                 "metadata": {**source.metadata, **(metadata or {})},
                                 "license": source.license or parent.license,
                                 "description": source.description or parent.description})
        try:
            for event in import_model(self.catalog, source, staging=self.ctx.staging_dir / "import",
                                      job_id=self.ctx.job_id, move=True, parent_id=parent.id,
                                      action="quantize", params={**params, **self.versions}):
                if isinstance(event, Result):
                    artifact = self.catalog.artifact(event.data["artifact_id"])
                    self.made.append(artifact.id)
                    self.result_artifact = artifact
                    continue
                yield event
        except DuplicateArtifactError as exc:
            existing = self.catalog.artifact(exc.existing_id) if exc.existing_id else None
            if existing is None:
                raise
            yield Log(f"{name}: the same file is already in the catalog as {existing.ref}; "
                      "kept that one", level="warning")
            self.result_artifact = existing

    def measure(self, artifact: Artifact, gguf: Path, label: str, note: str = "") -> Iterator[Event]:
        """Perplexity of ``gguf`` recorded on ``artifact`` (reused if already measured)."""
        from llmops_desktop.quantize.perplexity import perplexity

        if not self.enabled:
            return
        for ev in self.catalog.evaluations(artifact.id):
            if (ev.metric == "perplexity" and ev.dataset_sha256 == self.eval_sha
                    and ev.params.get("n_ctx") == self.n_ctx):
                self.figures[label] = ev.value
                yield Log(f"perplexity of {artifact.ref}: {ev.value:.4f} (measured before)")
                return
        yield Progress(0, None, "steps", f"measuring perplexity of {label}")
        res = perplexity(gguf, self.eval_text, n_ctx=self.n_ctx, threads=self.threads)
        self.catalog.add_evaluation(
            artifact.id, "perplexity", res.perplexity, dataset=self.eval_name,
            dataset_sha256=res.text_sha256, job_id=self.ctx.job_id,
            params={"n_ctx": res.n_ctx, "tokens": res.tokens_scored, "engine": "llama.cpp",
                    **({"via": note} if note else {})})
        self.figures[label] = res.perplexity
        yield Metric(f"perplexity:{label}", res.perplexity)
        yield Log(f"perplexity of {artifact.ref}: {res.perplexity:.4f} over "
                  f"{res.tokens_scored} tokens")

    def compare(self, artifact: Artifact, gguf: Path, label: str) -> Iterator[Event]:
        """KL divergence and top-1 agreement of the variant ``gguf`` against the job's
        parent on the perplexity text, recorded on ``artifact`` (reused if measured)."""
        from llmops_desktop.quantize import kl

        if not self.enabled:
            return
        for ev in self.catalog.evaluations(artifact.id):
            if (ev.metric == kl.KL_METRIC and ev.dataset_sha256 == self.eval_sha
                    and ev.params.get("n_ctx") == self.n_ctx
                    and ev.params.get("reference_id") == self.parent.id):
                self.kl[label] = {"kl_divergence": ev.value, **ev.params}
                yield Log(f"KL divergence of {artifact.ref}: {ev.value:.6g} (measured before)")
                return
        try:
            if self.reference is None:
                yield Progress(0, None, "steps", "computing the parent's log-probabilities")
                make = kl.reference_from_hf if self.parent.kind == "hf" else kl.reference_from_gguf
                self.reference = yield from make(
                    self.parent.path, self.eval_text, self.ctx.staging_dir / "kl-parent.f32",
                    n_ctx=self.n_ctx, threads=self.threads)
            yield Progress(0, None, "steps", f"measuring KL divergence of {label}")
            res = yield from kl.compare_gguf(self.reference, gguf, self.eval_text,
                                             threads=self.threads)
        except InvalidInputError as exc:
            self.kl[label] = {"error": str(exc)}
            yield Log(f"KL divergence of {artifact.ref} not measured: {exc}", level="warning")
            return
        params = {"n_ctx": self.n_ctx, "engine": "llama.cpp", "reference_id": self.parent.id,
                  "reference": self.parent.ref, "reference_engine": self.reference.engine,
                  **res.params()}
        self.catalog.add_evaluation(artifact.id, kl.KL_METRIC, res.kl_mean,
                                    dataset=self.eval_name, dataset_sha256=self.eval_sha,
                                    job_id=self.ctx.job_id, params=params)
        self.catalog.add_evaluation(artifact.id, kl.TOP1_METRIC, res.top1_agreement,
                                    dataset=self.eval_name, dataset_sha256=self.eval_sha,
                                    job_id=self.ctx.job_id, params=params)
        self.kl[label] = {"kl_divergence": res.kl_mean, "top1_agreement": res.top1_agreement,
                          **params}
        yield Metric(f"kl_divergence:{label}", res.kl_mean)
        yield Metric(f"top1_agreement:{label}", res.top1_agreement)
        yield Log(f"KL divergence of {artifact.ref} against {self.parent.ref}: "
                  f"{res.kl_mean:.6g} (95 % {res.kl_ci95[0]:.6g}–{res.kl_ci95[1]:.6g}, median "
                  f"{res.kl_median:.6g}, 99th percentile {res.kl_p99:.6g}); same top token at "
                  f"{res.top1_agreement * 100:.2f} % of {res.tokens_scored} positions")

    def measure_variant(self, artifact: Artifact, label: str) -> Iterator[Event]:
        """A GGUF variant's perplexity, then its KL divergence against the parent."""
        yield from self.measure(artifact, artifact.path, label)
        yield from self.compare(artifact, artifact.path, label)


def run_quantize(ctx: JobContext, artifact_id: int, targets: Sequence[str], *,
                 keep_intermediate: bool = False, threads: int | None = None,
                 eval_text: str | None = None, force: bool = False,
                 n_ctx: int = 512, evaluate: bool = True) -> Iterator[Event]:
    from llmops_desktop.quantize.perplexity import default_eval_text

    parent = ctx.catalog.artifact(artifact_id)
    plan = plan_targets(parent, targets, force=force)
    _check_parent_intact(ctx.catalog, parent)
    text_path = Path(eval_text) if eval_text else default_eval_text()
    try:
        text = text_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read the evaluation text {text_path}: {exc}") from None
    q = _Quantizer(ctx, parent, threads or ctx.settings.default_threads, text,
                   text_path.name, n_ctx)
    q.enabled = evaluate
    gguf_targets = [t for t in plan if not t.startswith(BNB_PREFIX)]
    bnb_targets = [t for t in plan if t.startswith(BNB_PREFIX)]
    stage = ctx.staging_dir
    base = _slug(parent.model_name)
    yield Log(f"quantizing {parent.ref} to {', '.join(plan)} with {q.threads} threads")

    if gguf_targets:
        from llmops_desktop.quantize.llama_quant import convert_hf_to_gguf, quantize_gguf

        source_gguf: Path
        source_artifact = parent
        if parent.kind == "hf":
            direct = [t for t in gguf_targets if GGUF_TARGETS[t].convert_outtype]
            needs_f16 = any(not GGUF_TARGETS[t].convert_outtype for t in gguf_targets)
            tensors = _tensor_count(parent)
            f16_path = stage / f"{base}-F16.gguf"
            if needs_f16 or "F16" in gguf_targets:
                _check_space(stage, estimate(parent.metadata, "F16")["size_bytes"], "the F16 GGUF")
                yield from convert_hf_to_gguf(parent.path, f16_path, "f16", tensors_total=tensors)
            for t in direct:
                if t == "F16":
                    continue
                out = stage / f"{base}-{t}.gguf"
                _check_space(stage, estimate(parent.metadata, t)["size_bytes"], t)
                yield from convert_hf_to_gguf(parent.path, out, GGUF_TARGETS[t].convert_outtype,
                                              tensors_total=tensors)
                yield from q.register(out, f"{parent.model_name}-{t}", parent,
                                      {"target": t, "method": "convert"})
                yield from q.measure_variant(q.result_artifact, t)
            f16_artifact: Artifact | None = None
            if f16_path.exists():
                # The parent's own figure is measured on its faithful GGUF rendering.
                if "F16" in gguf_targets or keep_intermediate:
                    yield from q.register(f16_path, f"{parent.model_name}-F16", parent,
                                          {"target": "F16", "method": "convert"})
                    f16_artifact = q.result_artifact
                    source_gguf = f16_artifact.path
                else:
                    source_gguf = f16_path
                yield from q.measure(parent, source_gguf, "parent", note="F16 GGUF conversion")
                if f16_artifact is not None:
                    yield from q.measure_variant(f16_artifact, "F16")
                    source_artifact = f16_artifact
            rest = [t for t in gguf_targets if not GGUF_TARGETS[t].convert_outtype]
        else:
            source_gguf = parent.path
            yield from q.measure(parent, source_gguf, "parent")
            rest = gguf_targets
        have = str(source_artifact.metadata.get("quantization", "F16")).upper()
        for i, t in enumerate(rest):
            out = stage / f"{base}-{t}.gguf"
            _check_space(stage, estimate(parent.metadata, t)["size_bytes"], t)
            yield Log(f"[{i + 1}/{len(rest)}] {t} from {source_artifact.ref}")
            yield from quantize_gguf(source_gguf, out, t, threads=q.threads,
                                     allow_requantize=have not in ("F16", "BF16", "F32"))
            yield from q.register(out, f"{parent.model_name}-{t}", source_artifact,
                                  {"target": t, "method": "llama_model_quantize",
                                   "threads": q.threads, "from_quantization": have,
                                   **({"via": "F16 (not kept)"} if source_artifact is parent
                                      and parent.kind == "hf" else {})})
            yield from q.measure_variant(q.result_artifact, t)

    for t in bnb_targets:
        from llmops_desktop.quantize.bnb import quantize_bnb

        out_dir = stage / f"{base}-{t}"
        yield from quantize_bnb(parent.path, out_dir, t)
        # The packed 4-bit tensors hold two weights a byte: count the parent's parameters.
        yield from q.register(out_dir, f"{parent.model_name}-{t}", parent,
                              {"target": t, "method": "bitsandbytes"},
                              metadata={"quantization": t,
                                        "parameters": parent.metadata.get("parameters")})
    yield Result({"artifact_ids": q.made, "artifact_id": q.made[-1] if q.made else None,
                  "perplexity": q.figures, "kl": q.kl})


@register_task("quantize", QuantizeRequest)
def quantize_task(ctx: JobContext, request: QuantizeRequest) -> Iterator[Event]:
    r = request.check(ctx.catalog)
    yield from run_quantize(ctx, r.artifact_id, r.targets, keep_intermediate=r.keep_intermediate,
                            threads=r.threads, eval_text=r.eval_text, force=r.force,
                            n_ctx=r.n_ctx, evaluate=r.evaluate)
