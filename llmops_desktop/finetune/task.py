"""The "finetune" job: train a LoRA adapter and register it as a child of its base.

``--method dpo`` trains the adapter on a preference dataset (prompt, chosen, rejected) with
TRL's DPO loss inside the same loop (see :mod:`llmops_desktop.finetune.dpo`), so Cancel,
checkpoints and Resume work as for LoRA.

One process trains in the job's own child; several (``nproc`` > 1 or several nodes)
launch through torchrun and the job relays rank 0's events. Cancel (SIGTERM) is turned
into a request to stop after the current step: the state is saved as a checkpoint
first. ``resume_from_job`` continues another fine-tune job from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Artifact, Catalog, JobState
from llmops_desktop.datasets.store import DatasetVersion, resolve_version, verify
from llmops_desktop.errors import (
    CancelledError,
    DuplicateArtifactError,
    InvalidInputError,
    JobError,
)
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.finetune.launcher import STOP_FILE, torchrun_command, world_size
from llmops_desktop.finetune.train import TrainSpec, latest_checkpoint, run_training
from llmops_desktop.jobs.events import Error, Event, Log, Metric, Result
from llmops_desktop.fields import check_values, spec
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task
from llmops_desktop.paths import Home
from llmops_desktop.procs import read_events, terminate

CURVE_POINTS = 400  # points of the training curve kept in the adapter's metadata


def run_dir_of(home: Home, job_id: int) -> Path:
    return home.runs_dir / f"finetune-{job_id}"


def qlora_unavailable(base: Artifact, device: str = "auto") -> str | None:
    """None when QLoRA can train this base here; else why not (for the CLI and the page)."""
    from llmops_desktop.quantize.bnb import bnb_support

    reason = bnb_support(base.path, "bnb-nf4", device=None if device == "auto" else device)
    if reason is None and importlib_missing("peft"):
        return "peft is not installed."
    return reason


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def _cuda_device(device: str) -> bool:
    from llmops_desktop.quantize.bnb import cuda_available

    return device != "cpu" and cuda_available()


def check_base(base: Artifact) -> None:
    if base.kind != "hf":
        raise InvalidInputError(
            f"{base.ref} is a {base.kind} artifact; LoRA trains on a Hugging Face model folder. "
            + ("Merge the adapter first, or train on its base." if base.kind == "lora" else
               "Choose the HF model it was made from."))


def resume_checkpoint(catalog: Catalog, job_id: int) -> tuple[Path, dict[str, Any]]:
    """The last checkpoint of fine-tune job ``job_id`` (following earlier resumes) and the
    job's parameters."""
    job = catalog.job(job_id)
    if job.kind != "finetune":
        raise InvalidInputError(f"Job #{job_id} is a {job.kind} job, not a fine-tune.")
    if not job.state.finished:
        raise InvalidInputError(f"Job #{job_id} is still {job.state.value}; cancel it first, "
                                "then resume it.")
    seen: set[int] = set()
    current = job
    while True:
        ckpt = latest_checkpoint(run_dir_of(catalog.home, current.id))
        if ckpt is not None:
            return ckpt, job.params
        seen.add(current.id)
        earlier = current.params.get("resume_from_job")
        if earlier is None or earlier in seen:
            break
        current = catalog.job(int(earlier))
    raise InvalidInputError(
        f"Job #{job_id} left no checkpoint (it stopped before its first one was saved); "
        "start the fine-tune again instead.")


def _downsample(points: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    if len(points) <= n:
        return points
    keep = {round(i * (len(points) - 1) / (n - 1)) for i in range(n)}
    keep |= {i for i, p in enumerate(points) if p.get("val_loss") is not None}
    return [p for i, p in enumerate(points) if i in keep]


class _StopRequest:
    """SIGTERM while training: stop after the current step, having saved a checkpoint."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _StopRequest:
        try:
            self._old = signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not the main thread (a test calling the task directly)
            self._old = None
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True
        try:
            (self.run_dir / STOP_FILE).touch()
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)

    def __call__(self) -> bool:
        return self.requested or (self.run_dir / STOP_FILE).exists()


def _relay(cmd: list[str], run_dir: Path, stop: _StopRequest) -> Iterator[Event]:
    """Run torchrun and pass rank 0's events on; raise the error a rank reported."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    error: Error | None = None
    try:
        assert proc.stdout is not None
        for event in read_events(proc.stdout):
            if isinstance(event, Error):
                error = error or event
                continue
            yield event
        code = proc.wait()
    finally:
        terminate(proc, grace=30)
    if error is not None:
        raise error.to_exception()
    if code != 0:
        if stop():
            raise CancelledError("Cancelled; the last checkpoint is kept for Resume.")
        raise JobError(f"torchrun exited with code {code}; the job's log has each rank's output.")


@dataclass(frozen=True)
class FinetuneRequest(JobRequest):
    """Train a LoRA adapter of ``base_id`` on dataset version ``dataset_id``, or continue
    fine-tune job ``resume_from_job`` from its last checkpoint (same base, data, options)."""

    kind: ClassVar[str] = "finetune"

    base_id: int = spec(description="The Hugging Face model to adapt.", label="Base model",
                        exposed=False)
    dataset_id: int = spec(description="A dataset version (Datasets page).", label="Dataset",
                           exposed=False)
    options: FinetuneOptions = field(default_factory=FinetuneOptions)
    resume_from_job: int | None = spec(
        None, "Continue a cancelled, failed or killed fine-tune from its last checkpoint.",
        label="Resume job", exposed=False, metavar="JOB_ID")

    @classmethod
    def resume(cls, catalog: Catalog, job_id: int) -> FinetuneRequest:
        """A request that continues fine-tune ``job_id`` from its checkpoint."""
        _, params = resume_checkpoint(catalog, job_id)
        if catalog.job(job_id).state is JobState.SUCCEEDED:
            raise InvalidInputError(f"Job #{job_id} finished; there is nothing to resume.")
        earlier = cls.from_params({k: v for k, v in params.items() if k != "resume_from_job"})
        return dataclasses.replace(earlier, resume_from_job=job_id)

    def check(self, catalog: Catalog | None = None) -> FinetuneRequest:
        """The options' bounds; with the catalog, the base, the dataset, a resumable job
        and whether QLoRA or FSDP can run here."""
        super().check()
        self.options.check()
        check_values(self.options)
        if catalog is None:
            return self
        base = catalog.artifact(int(self.base_id))
        check_base(base)
        version = resolve_version(catalog, int(self.dataset_id))
        opts = self.options
        if opts.preference and version.shape != "preference":
            raise InvalidInputError(
                f"{version.ref} holds {version.shape} rows; --method {opts.method} trains on "
                "preference pairs (prompt, chosen, rejected). Make them from ratings with "
                "'llmops feedback to-dataset --kind preference', or import such a file.")
        if opts.preference and world_size(opts) > 1:
            raise InvalidInputError(f"--method {opts.method} trains in one process for now: "
                                    "use --nproc 1 on one node.")
        if opts.quantized:
            reason = qlora_unavailable(base, opts.device)
            if reason:
                raise InvalidInputError(f"QLoRA is not available here: {reason} "
                                        "Use --method lora" + (" without --four-bit." if
                                                           opts.preference else "."))
        if opts.strategy == "fsdp" and world_size(opts) > 1 and not _cuda_device(opts.device):
            raise InvalidInputError("FSDP shards the model across GPUs and needs CUDA; on CPU "
                                    "processes use --strategy ddp.")
        if self.resume_from_job is not None:
            resume_checkpoint(catalog, int(self.resume_from_job))
        if opts.suites:
            from llmops_desktop.finetune.after_eval import check_suites

            check_suites(catalog, opts.suites)
        return self


@register_task("finetune", FinetuneRequest)
def finetune_task(ctx: JobContext, request: FinetuneRequest) -> Iterator[Event]:
    from llmops_desktop.finetune.memory import describe, estimate_memory

    catalog = ctx.catalog
    request.check(catalog)
    base = catalog.artifact(int(request.base_id))
    version = resolve_version(catalog, int(request.dataset_id))
    verify(version)
    opts, resume_from_job = request.options, request.resume_from_job
    ckpt: Path | None = None
    if resume_from_job is not None:
        ckpt, _ = resume_checkpoint(catalog, int(resume_from_job))
    run_dir = run_dir_of(ctx.home, ctx.job_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    spec = TrainSpec(base_path=str(base.path), base_ref=base.ref,
                     dataset=version.to_json(with_indices=True), options=opts.to_dict(),
                     resume_from=str(ckpt) if ckpt else None,
                     extra={"job_id": ctx.job_id, "resume_from_job": resume_from_job})
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec.to_json(), indent=1), encoding="utf-8")
    est = estimate_memory(base.path, opts, metadata=base.metadata)
    yield Log(describe(est), level="info" if est.fits is not False else "warning")
    yield Log(f"fine-tuning {base.ref} on {version.ref} ({version.rows} rows, sha256 "
              f"{version.sha256[:12]}); run folder {run_dir}"
              + (f"; resuming job #{resume_from_job} from {ckpt.name}" if ckpt else ""))
    result: dict[str, Any] | None = None
    with _StopRequest(run_dir) as stop:
        if world_size(opts) > 1:
            cmd = torchrun_command(opts, spec_path, run_dir, job_id=ctx.job_id)
            yield Log("launching " + " ".join(cmd))
            events = _relay(cmd, run_dir, stop)
        else:
            events = run_training(spec, run_dir, should_stop=stop)
        for event in events:
            if isinstance(event, Result):
                result = event.data
                continue
            yield event
    if result is None:
        raise JobError("Training ended without a result; see the job's log.")
    final: Result | None = None
    for event in _register(ctx, base, version, opts, run_dir, result, resume_from_job):
        if isinstance(event, Result):
            final = event
            continue
        yield event
    assert final is not None
    if opts.suites:
        from llmops_desktop.finetune.after_eval import evaluate_after

        adapter = catalog.artifact(final.data["artifact_id"])
        yield from evaluate_after(ctx, base, adapter, opts.suites, run_dir=run_dir,
                                  threads=opts.threads, device=opts.device)
        final = Result({**final.data, "suites": opts.suites})
    yield final


def _register(ctx: JobContext, base: Artifact, version: DatasetVersion, opts: FinetuneOptions,
              run_dir: Path, result: dict[str, Any],
              resume_from_job: int | None) -> Iterator[Event]:
    from llmops_desktop.finetune.train import METRICS_FILE
    from llmops_desktop.importer import import_model, inspect_source

    catalog = ctx.catalog
    curve = []
    try:
        with open(run_dir / METRICS_FILE, encoding="utf-8") as fh:
            curve = [json.loads(line) for line in fh if line.strip()]
    except OSError:
        pass
    compact = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in p.items()
                if k in ("step", "loss", "val_loss", "lr", "epoch", "reward_margin",
                         "val_reward_margin")} for p in curve]
    kind = "dpo" if opts.preference else "lora"
    name = opts.name or f"{base.model_name}-{kind}-{version.name}"
    source = inspect_source(Path(result["adapter_dir"]), name=name)
    figures = {"final_loss": result.get("final_loss"), "final_val_loss": result.get("final_val_loss"),
               "base_val_loss": result.get("base_val_loss")}
    if opts.preference:
        figures.update(method=opts.method, beta=opts.beta,
                       final_reward_margin=result.get("final_reward_margin"),
                       final_val_reward_margin=result.get("final_val_reward_margin"))
    metadata = {**source.metadata, "base_model": base.ref, "base_artifact_id": base.id,
                "dataset": {"name": version.name, "version": version.version, "ref": version.ref,
                            "sha256": version.sha256, "shape": version.shape,
                            "split": result.get("split")},
                **figures, "steps": result.get("steps"), "tokens_seen": result.get("tokens_seen"),
                "train_seconds": result.get("train_seconds"), "world": result.get("world"),
                "curve": _downsample(compact, CURVE_POINTS), "run_dir": str(run_dir)}
    source = type(source)(**{**source.__dict__, "metadata": metadata,
                             "source": f"finetune:{base.ref}+{version.ref}",
                             "license": source.license or base.license,
                             "description": f"{'DPO-trained ' if opts.preference else ''}LoRA "
                                            f"adapter of {base.ref} trained on {version.ref}"})
    params = {"base": base.ref, "dataset": version.ref, "dataset_sha256": version.sha256,
              **opts.to_dict(), "resume_from_job": resume_from_job}
    artifact: Artifact | None = None
    try:
        for event in import_model(catalog, source, staging=ctx.staging_dir / "import",
                                  job_id=ctx.job_id, move=False, parent_id=base.id,
                                  action="finetune", params=params,
                                  tags=("lora", "dpo") if opts.preference else ("lora",)):
            if isinstance(event, Result):
                artifact = catalog.artifact(event.data["artifact_id"])
                continue
            yield event
    except DuplicateArtifactError as exc:
        if not exc.existing_id:
            raise
        artifact = catalog.artifact(exc.existing_id)
        yield Log(f"the same adapter is already in the catalog as {artifact.ref}; kept that one",
                  level="warning")
    assert artifact is not None
    evaluation = {"engine": "torch", "split": "validation", "max_len": opts.max_len,
                  "rows": result.get("validation_rows"), "seed": opts.seed}
    ds_name = f"{version.ref}:validation"
    ppl: dict[str, float] = {}
    if result.get("base_val_loss") is not None:
        ppl["base"] = math.exp(result["base_val_loss"])
        if not any(e.metric == "perplexity" and e.dataset == ds_name
                   and e.params.get("max_len") == opts.max_len
                   for e in catalog.evaluations(base.id)):
            catalog.add_evaluation(base.id, "perplexity", ppl["base"], dataset=ds_name,
                                   dataset_sha256=version.sha256, params=evaluation,
                                   job_id=ctx.job_id)
    if result.get("final_val_loss") is not None and not opts.preference:  # DPO's is no LM loss
        ppl["tuned"] = math.exp(result["final_val_loss"])
        catalog.add_evaluation(artifact.id, "perplexity", ppl["tuned"], dataset=ds_name,
                               dataset_sha256=version.sha256, params=evaluation,
                               job_id=ctx.job_id)
    for label, value in ppl.items():
        yield Metric(f"perplexity:{label}", value)
    if ppl:
        yield Log("validation perplexity: " + ", ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
    yield Result({"artifact_id": artifact.id, "ref": artifact.ref, "path": str(artifact.path),
                  "run_dir": str(run_dir), "perplexity": ppl, **figures,
                  "steps": result.get("steps"), "resumed_from_job": resume_from_job})
