"""Several training processes through torchrun (``torch.distributed.run``), not our own.

One machine: ``torchrun --standalone --nproc-per-node N``. Several machines: the same
command on each with ``--nnodes M --node-rank R --master-addr HOST --master-port PORT``
(the rendezvous is the first node's address, given as ``--rdzv-endpoint HOST:PORT``), and
the home folder with the base model and dataset reachable at the same path on every node
(a shared file system). Each rank runs :mod:`llmops_desktop.finetune.worker`; rank 0 prints
the events the job relays. CPU processes use the gloo backend, GPUs NCCL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmops_desktop.finetune.config import FinetuneOptions

STOP_FILE = "STOP"


def torchrun_command(opts: FinetuneOptions, spec_path: Path, run_dir: Path,
                     *, job_id: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={opts.nproc}"]
    if opts.nnodes > 1:
        host, _, port = opts.rdzv_endpoint.rpartition(":")
        cmd += [f"--nnodes={opts.nnodes}", f"--node-rank={opts.node_rank}",
                f"--master-addr={host}", f"--master-port={port or 29500}"]
    else:
        cmd += ["--standalone", "--nnodes=1"]
    cmd += ["--module", "llmops_desktop.finetune.worker", str(spec_path), str(run_dir)]
    return cmd


def world_size(opts: FinetuneOptions) -> int:
    return opts.nproc * opts.nnodes
