"""One rank of a torchrun launch: ``python -m llmops_desktop.finetune.worker SPEC RUN_DIR``.

Rank 0 prints the run's events as JSON lines on stdout (the job relays them); every rank
prints its own error. A ``STOP`` file in the run folder (the job writes it on Cancel)
makes all ranks save a checkpoint at the same step and end.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m llmops_desktop.finetune.worker SPEC.json RUN_DIR", file=sys.stderr)
        return 2
    import torch
    import torch.distributed as tdist

    from llmops_desktop.errors import CancelledError, LLMOpsError
    from llmops_desktop.finetune.launcher import STOP_FILE
    from llmops_desktop.finetune.train import Dist, TrainSpec, run_training
    from llmops_desktop.jobs.events import Error, event_to_line

    spec = TrainSpec.from_json(json.loads(Path(args[0]).read_text(encoding="utf-8")))
    run_dir = Path(args[1])
    dist = Dist.from_env()
    device = spec.options.get("device", "auto")
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    tdist.init_process_group(backend="nccl" if use_cuda else "gloo")

    def emit(event) -> None:
        sys.stdout.write(event_to_line(event) + "\n")
        sys.stdout.flush()

    code = 0
    try:
        for event in run_training(spec, run_dir, dist=dist,
                                  should_stop=lambda: (run_dir / STOP_FILE).exists()):
            if dist.main:
                emit(event)
    except CancelledError as exc:
        if dist.main:
            emit(Error("CancelledError", str(exc)))
    except LLMOpsError as exc:
        emit(Error(**(exc.to_event() | {"message": f"rank {dist.rank}: {exc}"})))
        code = 1
    except Exception as exc:  # noqa: BLE001 - reported, with the traceback on stderr
        traceback.print_exc()
        emit(Error("JobError", f"rank {dist.rank}: {type(exc).__name__}: {exc}"))
        code = 1
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
    return code


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
