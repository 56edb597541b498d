"""Data-parallel distillation: the distill recipe in N processes with DistributedDataParallel.

Backend gloo on CPU (nccl when CUDA is available). Each worker rebuilds the teacher and student
from their specs and weights, trains its shard (see :func:`edgekd.kd.train.train`), and writes its
final weights; rank 0 also reports progress and the history. The caller checks that all ranks
ended with the same weights.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from edgekd.config import ModelSpec
from edgekd.data.dataset import Split
from edgekd.errors import TrainingError
from edgekd.kd.objective import Recipe, fit
from edgekd.kd.train import TrainHistory


def _worker(
    rank: int,
    world: int,
    folder: str,
    recipe: Recipe,
    teacher_spec: ModelSpec,
    teacher_state: dict,
    student_spec: ModelSpec,
    student_state: dict,
    data: Split,
    val: Split | None,
    events_path: str | None,
    quiet: bool,
) -> None:
    from edgekd.models import build
    from edgekd.progress import EventLog, TaskProgress

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        torch.set_num_threads(max(1, (recipe.settings.threads or torch.get_num_threads()) // world))
        teacher = build(teacher_spec, "teacher")
        teacher.load_state_dict(teacher_state)
        student = build(student_spec, "student")
        student.load_state_dict(student_state)
        model = DistributedDataParallel(student)
        events = EventLog(Path(events_path) if events_path and rank == 0 else None)
        progress = TaskProgress(f"distill[{world} procs]", events, quiet) if rank == 0 else None
        history = fit(
            model,
            student,
            teacher,
            data,
            val,
            recipe,
            progress,
            (lambda rec: events.emit("epoch", pass_="distill", rank=0, **rec)) if rank == 0 else None,
        )
        torch.save(student.state_dict(), Path(folder) / f"rank{rank}.pt")
        if rank == 0:
            (Path(folder) / "history.json").write_text(json.dumps(history.__dict__))
    finally:
        dist.destroy_process_group()


def fit_distributed(
    nproc: int,
    recipe: Recipe,
    teacher_spec: ModelSpec,
    teacher_state: dict,
    student_spec: ModelSpec,
    student_state: dict,
    data: Split,
    val: Split | None,
    events_path: Path | None,
    quiet: bool,
) -> tuple[dict[str, torch.Tensor], TrainHistory, dict[str, Any]]:
    """Run ``recipe`` in ``nproc`` processes; returns rank 0's weights, its history, and how far ranks differ."""
    with tempfile.TemporaryDirectory(prefix="edgekd-ddp-") as folder:
        try:
            mp.start_processes(
                _worker,
                nprocs=nproc,
                join=True,
                start_method="spawn",
                args=(
                    nproc,
                    folder,
                    recipe,
                    teacher_spec,
                    teacher_state,
                    student_spec,
                    student_state,
                    data,
                    val,
                    str(events_path) if events_path else None,
                    quiet,
                ),
            )
        except mp.ProcessRaisedException as exc:
            raise TrainingError(
                f"distributed distillation failed in a worker: {str(exc).strip().splitlines()[-1]}",
                fix="run with distill.nproc: 1 to see the error in one process",
            ) from exc
        states = [torch.load(Path(folder) / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in range(nproc)]
        raw = json.loads((Path(folder) / "history.json").read_text())
    diff = max(
        (float((states[0][k].float() - s[k].float()).abs().max()) for s in states[1:] for k in states[0]), default=0.0
    )
    history = TrainHistory(**raw)
    return states[0], history, {"max_weight_difference_between_ranks": diff}
