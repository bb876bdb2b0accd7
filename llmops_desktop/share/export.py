"""The "export" job: a package (to a file or a registry), an Ollama folder or an HF folder."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task
from llmops_desktop.paths import Home
from llmops_desktop.share.manifest import manifest_bytes

FORMATS = ("package", "ollama", "hf")


def export_package(catalog: Catalog, home: Home, artifact_id: int, output: str | Path, *,
                   with_parents: bool = False, variants: Sequence[str] = (),
                   sign: bool = False, registry_root: Path | None = None) -> Iterator[Event]:
    """Write a package to ``output`` (or publish it into ``registry_root``); ends with a Result."""
    from llmops_desktop.share.keys import ensure_keypair, sign_manifest
    from llmops_desktop.share.package import (
        build_manifest,
        default_package_name,
        package_path_for,
        package_size,
        plan_export,
        write_package,
    )

    start = time.monotonic()
    plan = plan_export(catalog, artifact_id, with_parents=with_parents, variants=variants)
    if registry_root is not None:
        dest = registry_root / default_package_name(plan.main)
    else:
        dest = package_path_for(output, plan.main)
    raw = build_manifest(catalog, plan)
    manifest = manifest_bytes(raw)
    signature = sign_manifest(home, manifest) if sign else None
    fingerprint = ensure_keypair(home).fingerprint if sign else None
    size = package_size(plan, manifest, signature)
    yield Log(f"packing {', '.join(i.artifact.ref for i in plan.items)} into {dest} "
              f"({size / 1e6:.1f} MB{', signed ' + str(fingerprint) if sign else ', unsigned'})")
    yield from write_package(catalog, plan, dest, manifest=manifest, signature=signature)
    published = None
    if registry_root is not None:
        from llmops_desktop.share.registry import add_entry, entry_for, published_by

        yield Progress(size, size, "bytes", "updating the registry index")
        published = add_entry(registry_root, entry_for(raw, dest.name, dest.stat().st_size,
                                                       fingerprint, published_by=published_by()))
        yield Log(f"listed {dest.name} in {registry_root / 'index.json'}")
    elapsed = time.monotonic() - start
    catalog.audit("export", artifact_id=plan.main.id, details={
        "format": "package", "path": str(dest), "artifacts": [i.artifact.ref for i in plan.items],
        "signed": fingerprint, "registry": str(registry_root) if registry_root else None})
    yield Result({"path": str(dest), "size_bytes": dest.stat().st_size, "format": "package",
                  "artifacts": plan.summary(), "signed_by": fingerprint,
                  "seconds": round(elapsed, 3), "published": published})


def run_export(ctx_catalog: Catalog, home: Home, artifact_id: int, output: str | None,
               format: str = "package", with_parents: bool = False,
               variants: Sequence[str] = (), sign: bool = False, registry: str | None = None,
               system: str | None = None, registry_root: Path | None = None) -> Iterator[Event]:
    if format not in FORMATS:
        raise InvalidInputError(f"Unknown export format {format!r}; one of {', '.join(FORMATS)}.")
    if format == "package":
        if registry and registry_root is None:
            raise InvalidInputError("internal: a registry export needs its folder")
        if not output and registry_root is None:
            raise InvalidInputError("Give where to write the package (-o FILE.llmpkg).")
        yield from export_package(ctx_catalog, home, artifact_id, output or "",
                                  with_parents=with_parents, variants=variants, sign=sign,
                                  registry_root=registry_root)
        return
    from llmops_desktop.share.exports import export_hf, export_ollama

    if not output:
        raise InvalidInputError(f"Give the folder to write the {format} export to (-o DIR).")
    if with_parents or variants or sign:
        yield Log("--with-parents, --variants and --sign apply to packages only; ignored",
                  level="warning")
    artifact = ctx_catalog.artifact(artifact_id)
    start = time.monotonic()
    out = Path(output).expanduser().absolute()
    if format == "ollama":
        yield from export_ollama(ctx_catalog, artifact, out, system=system)
    else:
        yield from export_hf(ctx_catalog, artifact, out)
    ctx_catalog.audit("export", artifact_id=artifact.id,
                      details={"format": format, "path": str(out)})
    yield Result({"path": str(out), "format": format, "artifact_id": artifact.id,
                  "size_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
                  "seconds": round(time.monotonic() - start, 3)})


@dataclass(frozen=True)
class ExportRequest(JobRequest):
    """Export one artifact: a package (to a file or a registry), an Ollama or an HF folder."""

    kind: ClassVar[str] = "export"

    artifact_id: int = spec(description="The artifact to export.", label="Artifact",
                            exposed=False)
    output: str | None = spec(
        None, "The package file (or a folder for it); for ollama and hf, the folder to write.",
        label="Save to", metavar="PATH", flag="--output")
    format: str = spec("package", "package: one signed, checksummed file for colleagues; "
                       "ollama: a folder with a Modelfile; hf: a Hugging Face model folder.",
                       label="Format", choices=FORMATS)
    with_parents: bool = spec(False, "Include the artifacts it was made from (its lineage), "
                              "so the receiver can quantize or fine-tune again.",
                              label="Include parents")
    variants: tuple[str, ...] = spec((), "Also include these variants of it, by type "
                                     "(comma-separated, e.g. Q4_K_M,Q8_0).",
                                     label="Variants", metavar="TYPES")
    sign: bool = spec(False, "Sign the manifest with your key.", label="Sign")
    registry: str | None = spec(None, "Publish into this registry (Settings → Registries) "
                                "instead of writing a file.", label="Registry",
                                metavar="REGISTRY", exposed=False)
    system: str | None = spec(None, "System prompt for the Ollama Modelfile (SYSTEM).",
                              label="System prompt")

    def check(self, catalog: Catalog | None = None) -> ExportRequest:
        super().check()
        if self.format == "package":
            if not self.output and not self.registry:
                raise InvalidInputError("Give where to write the package (-o FILE.llmpkg).")
        elif not self.output:
            raise InvalidInputError(f"Give the folder to write the {self.format} export to "
                                    "(-o DIR).")
        elif self.registry:
            raise InvalidInputError("Only a package is published to a registry.")
        if catalog is not None:
            catalog.artifact(int(self.artifact_id))
        return self


@register_task("export", ExportRequest)
def export_task(ctx: JobContext, request: ExportRequest) -> Iterator[Event]:
    r = request.check(ctx.catalog)
    root = None
    if r.registry:
        from llmops_desktop.share.registry import registry_root

        root = registry_root(ctx.settings, r.registry)
    yield from run_export(ctx.catalog, ctx.home, r.artifact_id, r.output, format=r.format,
                          with_parents=r.with_parents, variants=r.variants, sign=r.sign,
                          registry=r.registry, system=r.system, registry_root=root)
