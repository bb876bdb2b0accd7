"""House rules that keep the layers apart (DESIGN.md, rules 1 and 2)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmops_desktop"
QT_MODULES = {"PySide6", "pyqtgraph", "shiboken6", "superqt", "PyQt5", "PyQt6"}
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "llama_cpp", "accelerate"}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_qt_is_imported_only_under_qt_package() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "qt" not in p.relative_to(PACKAGE).parts[:1]
                 and _imports(p, top_level_only=False) & QT_MODULES]
    assert offenders == [], f"Qt imported outside llmops_desktop/qt/: {offenders}"


def test_heavy_ml_libraries_are_imported_lazily() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if _imports(p, top_level_only=True) & HEAVY]
    assert offenders == [], f"torch & co. imported at module level in: {offenders}"


def test_core_runs_without_qt_or_a_display() -> None:
    """Importing every core module and using the catalog loads neither Qt nor torch."""
    code = (
        "import sys, importlib, pkgutil, tempfile, llmops_desktop\n"
        "for m in pkgutil.walk_packages(llmops_desktop.__path__, 'llmops_desktop.'):\n"
        "    if '.qt' not in m.name: importlib.import_module(m.name)\n"
        "from llmops_desktop.catalog import Catalog\n"
        "Catalog.open(tempfile.mkdtemp()).artifacts()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        f"{sorted(QT_MODULES | HEAVY)!r})\n"
        "print(bad); sys.exit(1 if bad else 0)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no DISPLAY, no QT_QPA_PLATFORM
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- the floors point one way ------------------------------------------------------------------

LOWER_FLOORS = ("catalog", "jobs", "formats", "errors", "paths", "safepath", "hashing")
FEATURES = {"acquire", "quantize", "finetune", "serving", "share", "datasets", "monitor",
            "mirror", "cli", "qt"}


def _package_imports(path: Path, *, modules: bool = True) -> set[str]:
    """Every ``llmops_desktop.X...`` a file imports, at any depth (lazy ones too): modules
    and the names taken from them (``from a.b import c`` gives ``a.b`` and ``a.b.c``;
    only ``a.b.c`` without ``modules``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if modules:
                names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("llmops_desktop.")}


def _floor_files(floor: str) -> list[Path]:
    folder = PACKAGE / floor
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{floor}.py"]


def test_lower_floors_import_no_feature() -> None:
    """catalog, jobs, formats, errors, paths, safepath and hashing know no feature package."""
    offenders = {}
    for floor in LOWER_FLOORS:
        for path in _floor_files(floor):
            bad = {n for n in _package_imports(path) if n.split(".")[1] in FEATURES}
            if bad:
                offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}, f"a lower floor imports a feature: {offenders}"


def test_cli_helpers_import_no_command_group() -> None:
    from llmops_desktop.cli import COMMAND_MODULES

    imported = _package_imports(PACKAGE / "cli" / "common.py")
    groups = [n for n in imported
              if any(n == m or n.startswith(m + ".") for m in COMMAND_MODULES)
              or n.endswith(".commands") or n in ("llmops_desktop.cli", "llmops_desktop.cli.main")]
    assert groups == [], f"cli/common.py imports a command group: {groups}"
    # ... and a command group takes its helpers from cli.common, never the entry point.
    back = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if p.parent != PACKAGE / "cli" and {
                "llmops_desktop.cli", "llmops_desktop.cli.main",
                "llmops_desktop.cli.build_parser"} & _package_imports(p, modules=False)]
    assert back == [], f"these import the cli entry point back: {back}"


# ---- every error crosses the process boundary intact -------------------------------------------

def _all_error_classes() -> list[type]:
    import importlib
    import pkgutil

    import llmops_desktop
    from llmops_desktop.errors import LLMOpsError

    for info in pkgutil.walk_packages(llmops_desktop.__path__, "llmops_desktop."):
        if ".qt" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: list[type] = [LLMOpsError]
    for cls in found:  # grows while walked: breadth-first over subclasses
        found += [s for s in cls.__subclasses__()
                  if s not in found and s.__module__.startswith("llmops_desktop")]
    return found


def test_every_module_with_errors_is_known_to_errors() -> None:
    """An event naming only a class still finds it: errors.ERROR_MODULES lists every module
    outside errors.py that defines one."""
    from llmops_desktop.errors import ERROR_MODULES

    modules = {c.__module__ for c in _all_error_classes()} - {"llmops_desktop.errors"}
    assert modules <= set(ERROR_MODULES), sorted(modules - set(ERROR_MODULES))


def test_every_error_raised_in_a_job_reaches_the_parent_intact(catalog) -> None:
    """Each LLMOpsError subclass, raised in a real job child, comes back to the parent as
    the same class with its message, exit code and fields; the child exits with that code
    and the job row keeps the message."""
    from error_task import sample_error, start_raising_job

    from llmops_desktop.catalog import JobState
    from llmops_desktop.errors import CancelledError
    from llmops_desktop.jobs.events import Error

    classes = _all_error_classes()
    assert len(classes) > 30
    failures: list[str] = []
    batch = 6  # children at a time
    for start in range(0, len(classes), batch):
        runs = [(cls, f"{cls.__name__} went wrong; do X next", start_raising_job(
            catalog, cls, f"{cls.__name__} went wrong; do X next"))
            for cls in classes[start:start + batch]]
        for cls, message, run in runs:
            errors = [e for e in run.events() if isinstance(e, Error)]
            job = run.wait()
            expected = sample_error(cls, message)
            if len(errors) != 1:
                failures.append(f"{cls.__qualname__}: {len(errors)} error events")
                continue
            got = errors[0].to_exception()
            checks = {
                "class": (type(got), cls),
                "message": (str(got), message),
                "exit code": (got.exit_code, cls.exit_code),
                "child exit code": (run.process.returncode, cls.exit_code),
                "fields": ({n: getattr(got, n, None) for n in cls.field_names()},
                           {n: getattr(expected, n) for n in cls.field_names()}),
                "job row": ((job.state, job.error),
                            (JobState.CANCELLED if issubclass(cls, CancelledError)
                             else JobState.FAILED, message)),
            }
            failures += [f"{cls.__module__}.{cls.__qualname__} {what}: got {a!r}, want {b!r}"
                         for what, (a, b) in checks.items() if a != b]
    assert failures == [], "\n".join(failures)


def test_an_event_names_a_feature_error_the_parent_has_not_imported() -> None:
    """A process that never imported the datasets or mirror code still rebuilds their
    errors from an event, by the module the event names (only modules of this package)."""
    from llmops_desktop.datasets.store import DatasetNotFoundError
    from llmops_desktop.errors import DuplicateArtifactError
    from llmops_desktop.mirror.repos import RevisionNotFoundError

    events = [DatasetNotFoundError("no dataset 'x'; see 'llmops dataset list'").to_event(),
              RevisionNotFoundError("no revision v9", commit="abc").to_event(),
              {**DuplicateArtifactError("dup", existing_id=3).to_event(),
               "module": "this", "qualname": "DuplicateArtifactError"}]
    code = ("import json, sys\n"
            "from llmops_desktop.errors import error_from_event\n"
            "for event in json.loads(sys.stdin.read()):\n"
            "    e = error_from_event(event)\n"
            "    print(type(e).__module__, type(e).__name__, e.exit_code,"
            " getattr(e, 'commit', None), getattr(e, 'existing_id', None), str(e))\n")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(events),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        ("llmops_desktop.datasets.store DatasetNotFoundError 3 None None "
         "no dataset 'x'; see 'llmops dataset list'"),
        "llmops_desktop.mirror.repos RevisionNotFoundError 3 abc None no revision v9",
        "llmops_desktop.errors DuplicateArtifactError 4 None 3 dup",
    ]
    assert "Zen of Python" not in proc.stdout  # "this" is outside the package: not imported


def test_an_error_in_a_job_reaches_the_terminal_with_its_code_and_fields(home) -> None:
    """``llmops import`` of a model already in the catalog: the child's DuplicateArtifactError
    comes out of the command with exit code 4 and the id of the artifact already there."""
    def llmops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home",
                               str(home.root), *args], capture_output=True, text=True,
                              timeout=300, check=False)

    made = llmops("demo", "--json")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    again = llmops("import", first["path"], "--name", "again", "--json")
    assert again.returncode == 4, again.stderr
    reported = json.loads(again.stdout)
    assert reported["error"] == "DuplicateArtifactError" and reported["exit_code"] == 4
    assert reported["fields"] == {"existing_id": first["id"]}
    assert f"artifact #{first['id']}" in reported["message"]


# ---- operations are typed requests (#14 items 1, 2) --------------------------------------------

# Calls that queue a job, and how many positional arguments a typed submission passes.
_SUBMITTERS = {"submit": 2, "run_job_in_terminal": 2, "start": 1}


def _dict_job_submissions(source: str) -> list[str]:
    """Job submissions in ``source`` that pass a kind string or a parameter dict instead of
    one request: ``jobs.start("x", {...})``, ``runner.submit(catalog, "x", params)``,
    ``run_job_in_terminal(catalog, "x", params, ...)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in _SUBMITTERS:
            continue
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        if name == "start" and not owner.endswith("jobs") and owner != "runner":
            continue  # timers, threads, controllers: not job submissions
        expected = 2 if owner == "runner" else _SUBMITTERS[name]
        literal = any(isinstance(a, (ast.Dict, ast.DictComp)) or (
            isinstance(a, ast.Constant) and isinstance(a.value, str)) for a in node.args)
        kind_kw = any(k.arg in ("kind", "params") for k in node.keywords)
        if literal or kind_kw or len(node.args) > expected:
            found.append(f"line {node.lineno}: {ast.unparse(node)[:90]}")
    return found


def _front_end_files() -> list[Path]:
    files = [*PACKAGE.joinpath("qt").rglob("*.py"), *PACKAGE.joinpath("cli").rglob("*.py")]
    return files + sorted(PACKAGE.rglob("commands.py"))  # command groups beside their feature


def test_front_ends_never_build_job_parameter_dicts() -> None:
    """The window and the CLI submit ``JobRequest`` objects (built, checked, then submitted);
    the kind and the parameters come from the request, never from a dict made on the spot."""
    offenders = {str(p.relative_to(PACKAGE)): bad for p in _front_end_files()
                 if (bad := _dict_job_submissions(p.read_text(encoding="utf-8")))}
    assert offenders == {}, f"job submissions with a kind and a dict: {offenders}"
    # The check sees the old way of submitting (what this test guards against).
    assert _dict_job_submissions('self.ctx.jobs.start("merge", {"adapter_id": 1})')
    assert _dict_job_submissions('run_job_in_terminal(catalog, "import", params, quiet=True)')
    assert _dict_job_submissions('runner.submit(self.catalog, kind, params)')
    assert not _dict_job_submissions("self.ctx.jobs.start(request); self._timer.start(500)")


def _request_classes() -> dict[str, type]:
    from llmops_desktop.jobs.tasks import TASK_MODULES, request_class

    return {kind: request_class(kind) for kind in TASK_MODULES}


def test_every_job_kind_has_a_request_that_round_trips() -> None:
    """Each kind's request survives the job row: ``from_params(to_params())`` (through JSON,
    as the catalog stores it) gives the same request, with every field set off its default."""
    import dataclasses
    import typing

    from llmops_desktop.fields import field_specs
    from llmops_desktop.jobs.tasks import JobRequest

    classes = _request_classes()
    assert [k for k, c in classes.items() if c is None] == [], "kinds without a request"
    for kind, cls in classes.items():
        assert issubclass(cls, JobRequest) and cls.kind == kind
        assert dataclasses.fields(cls) and cls.__dataclass_params__.frozen, cls
        specs = {s.name: s for s in field_specs(cls)}
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            s = specs.get(f.name)
            if s is None:  # a nested record (fine-tune options): one field off its default
                nested = hints[f.name]
                values[f.name] = nested(**{dataclasses.fields(nested)[1].name: 3})
            elif s.type is bool:
                values[f.name] = not s.default
            elif s.type is tuple:
                values[f.name] = ("a", "b")
            elif s.choices:
                values[f.name] = s.choices[-1] if s.choices[-1] != s.default else s.choices[0]
            elif s.type in (int, float):
                values[f.name] = s.type(7 if s.maximum is None or s.maximum >= 7 else s.maximum)
            else:
                values[f.name] = "x/y"
        request = cls(**values)
        stored = json.loads(json.dumps(request.to_params()))
        assert cls.from_params(stored) == request, kind
        assert all(getattr(request, n) != s.default for n, s in specs.items()), kind


def test_register_task_refuses_a_duplicate_kind() -> None:
    """A second task for a kind is refused (no silent overwrite); the first one stays."""
    import pytest

    from llmops_desktop.jobs import tasks
    from llmops_desktop.quantize.task import QuantizeRequest, quantize_task

    tasks.get_task("quantize")
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task("quantize", QuantizeRequest)(lambda ctx, request: iter(()))
    assert tasks._REGISTRY["quantize"][0] is quantize_task


def test_cli_flags_are_the_request_fields() -> None:
    """``llmops quantize/import/download/demo/merge/lora-gguf/finetune/serve`` have one flag
    per exposed field of their request or options, and its help is the field's description
    (the same text a form shows as the tooltip)."""
    from llmops_desktop.acquire.requests import DownloadRequest
    from llmops_desktop.cli import build_parser
    from llmops_desktop.demo import DemoRequest
    from llmops_desktop.fields import field_specs
    from llmops_desktop.finetune.config import FinetuneOptions
    from llmops_desktop.finetune.merge import LoraGgufRequest, MergeRequest
    from llmops_desktop.import_request import ImportRequest
    from llmops_desktop.quantize.task import QuantizeRequest
    from llmops_desktop.serving.config import ServeOptions

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    pairs = {"quantize": QuantizeRequest, "import": ImportRequest, "download": DownloadRequest,
             "demo": DemoRequest, "merge": MergeRequest, "lora-gguf": LoraGgufRequest,
             "finetune": FinetuneOptions, "serve": ServeOptions}
    for command, cls in pairs.items():
        flags = {a.dest: a for a in commands.choices[command]._actions}
        for s in field_specs(cls):
            if not s.exposed:
                continue
            assert s.name in flags, f"llmops {command} has no flag for {s.name}"
            assert s.option in flags[s.name].option_strings, (command, s.name)
            assert flags[s.name].help.replace("%%", "%").startswith(s.description), \
                (command, s.name)


# ---- one pump, one reader, one terminate (#14 item 3) ------------------------------------

_SPAWNING_MODULES = {"subprocess", "multiprocessing", "pty"}
_OS_PROCESS_CALLS = {"system", "fork", "forkpty", "popen", "execv", "execve", "execvp",
                     "spawnv", "spawnl", "posix_spawn", "kill", "killpg"}


def _names(tree: ast.AST) -> set[str]:
    """Every name and attribute a module mentions (``os.kill`` gives ``os`` and ``kill``)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add(node.name.split(".")[-1])
    return out


def _method_calls(tree: ast.AST, owner: str | None = None) -> set[str]:
    """The ``x.name(...)`` calls of a module (with ``owner``: only ``owner.name(...)``)."""
    return {n.func.attr for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and (owner is None or (isinstance(n.func.value, ast.Name)
                                   and n.func.value.id == owner))}


def test_no_process_is_spawned_under_qt_outside_the_controllers() -> None:
    """Children are started and stopped by core functions (``runner.spawn``,
    ``serving.deploy.start_server``, ``mirror.run.start_mirror``); under ``qt/`` only a
    controller holds one, and no page, dialog or widget starts or signals a process."""
    offenders = []
    for path in sorted((PACKAGE / "qt").rglob("*.py")):
        if path.stem.endswith("_controller"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad = ((_imports(path, top_level_only=False) & _SPAWNING_MODULES)
               | (_names(tree) & {"QProcess", "Popen", "startDetached"})
               | {f"os.{c}" for c in _method_calls(tree, "os") & _OS_PROCESS_CALLS})
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(bad)}")
    assert offenders == [], f"process spawning under qt/ outside the controllers: {offenders}"


def _stdout_json_loops(tree: ast.AST) -> int:
    """``for line in x.stdout:`` loops that parse JSON lines themselves."""
    return sum(1 for node in ast.walk(tree)
               if isinstance(node, ast.For) and isinstance(node.iter, ast.Attribute)
               and node.iter.attr == "stdout"
               and _names(ast.Module(body=node.body, type_ignores=[])) & {"parse_event", "loads"})


def test_one_relay_one_reader_one_terminate() -> None:
    """Threads reach the GUI only through ``qt/pump.py``; a child's JSON lines are read
    only by ``procs.read_events``; SIGTERM, grace, SIGKILL is written only in
    ``procs.terminate``. A second copy of any of them is named here."""
    relay_words = {"threading", "QueuedConnection", "BlockingQueuedConnection", "QThread",
                   "QThreadPool", "QRunnable", "moveToThread"}
    found: dict[str, list[str]] = {"relay": [], "reader": [], "terminate": []}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _names(tree)
        if rel.startswith("qt/") and rel != "qt/pump.py" and names & relay_words:
            found["relay"].append(f"{rel}: {sorted(names & relay_words)}")
        if rel == "procs.py":
            continue
        if _stdout_json_loops(tree) or ("parse_event" in names and rel != "jobs/events.py"):
            found["reader"].append(rel)
        bad = ((_method_calls(tree) & {"kill", "terminate", "send_signal", "killpg"})
               | (names & {"SIGKILL"}))
        if bad:
            found["terminate"].append(f"{rel}: {sorted(bad)}")
    assert found == {"relay": [], "reader": [], "terminate": []}
