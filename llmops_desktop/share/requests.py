"""The "import-package" job's request, and the one signature question both front ends ask.

``llmops import FILE.llmpkg`` / ``llmops pull`` and the window (Import dialog, a dropped
package, Registries) read the package with :func:`prepare_package_import`: it says
whether a question must be asked (an unsigned package, an unknown signer) and what,
or refuses the package outright (Settings require signatures). The answer "yes" is the
request :attr:`SignatureQuestion.if_accepted`, bound to the manifest shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobRequest
from llmops_desktop.paths import Home


@dataclass(frozen=True)
class PackageImportRequest(JobRequest):
    """Verify a package and import what it holds; the signature decision comes with it."""

    kind: ClassVar[str] = "import-package"

    path: str = spec(description="The package file (.llmpkg).", label="Package",
                     exposed=False)
    trust_unknown: bool = spec(False, "Import a package signed by a key that is not in your "
                               "trust list without asking.", label="Trust an unknown signer")
    accept_fingerprint: str | None = spec(
        None, "Accept this one unknown signing key (its SHA256 fingerprint).",
        label="Accepted key", exposed=False)
    allow_unsigned: bool = spec(False, "Import an unsigned package without asking.",
                                label="Allow unsigned")
    accept_manifest_sha256: str | None = spec(
        None, "The manifest the user's answer was about: any other manifest is refused.",
        label="Accepted manifest", exposed=False)

    @classmethod
    def for_path(cls, path: str | Path, **options: Any) -> PackageImportRequest:
        return cls(path=str(Path(path).expanduser().absolute()), **options)

    def check(self, catalog: Catalog | None = None, *,
              require_signatures: bool | None = None) -> PackageImportRequest:
        """Read the manifest and signature; raise the refusal this request would meet."""
        from llmops_desktop.share.unpack import inspect_package, trust_decision

        super().check()
        home = catalog.home if catalog is not None else None
        if require_signatures is None:
            require_signatures = _require_signatures(home)
        info = inspect_package(home, self.path)
        trust_decision(info, require_signatures=require_signatures,
                       trust_unknown=self.trust_unknown,
                       accept_fingerprint=self.accept_fingerprint,
                       allow_unsigned=self.allow_unsigned)
        return self


@dataclass(frozen=True)
class SignatureQuestion:
    """What to ask before importing a package, and the request a "yes" gives."""

    text: str
    if_accepted: PackageImportRequest


def prepare_package_import(home: Home | None, path: str | Path, *,
                           require_signatures: bool) -> tuple[PackageImportRequest,
                                                              SignatureQuestion | None, Any]:
    """Read the package at ``path``: the request to submit when nothing must be asked (a
    trusted signer), else the question to ask; and the package's info. Raises the refusal
    (an unsigned package while Settings require signatures, a damaged package)."""
    from llmops_desktop.share.unpack import inspect_package, trust_decision

    request = PackageImportRequest.for_path(path)
    info = inspect_package(home, request.path)
    sig = info.signature
    what = (f"{info.path.name} ({info.manifest.main.ref}, manifest sha256 "
            f"{info.manifest_sha256[:16]}…)")
    if sig is None:
        trust_decision(info, require_signatures=require_signatures, allow_unsigned=True)
        question = SignatureQuestion(
            f"{what} is not signed, so who made it cannot be checked. Import it anyway?",
            replace(request, allow_unsigned=True,
                    accept_manifest_sha256=info.manifest_sha256))
        return request, question, info
    if sig.trusted_as is None:
        question = SignatureQuestion(
            f"{what} is signed by a key that is not in your trust list:\n\n"
            f"{sig.fingerprint}\n{sig.signer}\n\nCheck the fingerprint with the sender (and "
            "trust their key in Settings to stop this question). Import it anyway?",
            replace(request, accept_fingerprint=sig.fingerprint,
                    accept_manifest_sha256=info.manifest_sha256))
        return request, question, info
    return request, None, info


def _require_signatures(home: Home | None) -> bool:
    if home is None:
        return False
    from llmops_desktop.settings import load_settings

    return bool(load_settings(home.settings_path).require_signatures)
