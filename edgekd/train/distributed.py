"""Data-parallel distillation: the distill recipe in N processes launched by torchrun, on one machine or several.

``fit_distributed`` writes the job (model specs and weights, data, recipe) to a private temporary
folder and runs ``torchrun --nproc-per-node N -m edgekd.train.distributed <folder>``
(``torch.distributed.run``, the launcher PyTorch ships for single machines and clusters): ``--standalone`` on
one machine; with :class:`Nodes` (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``) every machine runs the same
compile and torchrun joins them. Each worker takes its device from the recipe (``cuda:<first + LOCAL_RANK>``
with nccl when training on CUDA, the CPU with gloo otherwise), wraps the student in DistributedDataParallel,
trains its DistributedSampler shard with the single-process recipe (:func:`edgekd.train.objective.fit`) and
writes its final weights; global rank 0 reports progress, each machine's first process writes the history.
The caller checks that the ranks on its machine ended with the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ConfigError, EdgekdError, TrainingError
from edgekd.data.dataset import Split
from edgekd.data.stream import from_plain, to_plain
from edgekd.train.loop import TrainHistory, TrainSettings
from edgekd.train.objective import Recipe, fit

JOB = "job.pt"
ONE_PROCESS = "run with distill.nproc: 1 (or without --nproc) to see the error in one process"


@dataclasses.dataclass(frozen=True)
class Nodes:
    """Several machines, each running the same compile: torchrun's ``--nnodes``, ``--node-rank`` and the
    ``--rdzv-endpoint`` (``host:port`` of node 0, reachable from every node)."""

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    def torchrun_args(self) -> list[str]:
        if self.nnodes == 1:
            return ["--standalone"]
        return [f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}", f"--rdzv-endpoint={self.rdzv_endpoint}"]


def process_group_backend(device: torch.device) -> str:
    """nccl for CUDA ranks, gloo for CPU ranks: what the ranks' tensors need, not what the machine has."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: str, local_rank: int) -> torch.device:
    """The device of the ``local_rank``-th process on a machine: ``cuda:N`` gives the machine's processes
    cuda:N, cuda:N+1, ...; the CPU is shared."""
    d = torch.device(device)
    if d.type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", (d.index or 0) + local_rank)


def _worker(folder: Path) -> None:
    from edgekd.core.progress import EventLog, TaskProgress
    from edgekd.models.build import build

    # tensors and plain values only (see fit_distributed): loads with weights_only=True
    job: dict[str, Any] = torch.load(folder / JOB, map_location="cpu", weights_only=True)
    job["recipe"] = Recipe(**{**job["recipe"], "settings": TrainSettings(**job["recipe"]["settings"])})
    job["teacher_spec"] = ModelSpec.model_validate(job["teacher_spec"])
    job["student_spec"] = ModelSpec.model_validate(job["student_spec"])
    job["data"] = Split(from_plain(job["data"][0]), job["data"][1])
    job["val"] = Split(from_plain(job["val"][0]), job["val"][1]) if job["val"] is not None else None
    recipe: Recipe = job["recipe"]
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(recipe.settings.device, local_rank)
    recipe.settings.device = str(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(process_group_backend(device), init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (recipe.settings.threads or job["threads"]) // local_world))
        teacher = build(job["teacher_spec"], "teacher")
        teacher.load_state_dict(job["teacher_state"])
        student = build(job["student_spec"], "student", teacher=teacher)
        student.load_state_dict(job["student_state"])
        student.to(device)
        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
        events = EventLog(Path(job["events_path"]) if job["events_path"] and rank == 0 else None)
        progress = TaskProgress(f"distill[{world} procs]", events, job["quiet"]) if rank == 0 else None
        history = fit(
            model,
            student,
            teacher,
            job["data"],
            job["val"],
            recipe,
            progress,
            (lambda rec: events.emit("epoch", pass_="distill", rank=0, **rec)) if rank == 0 else None,
        )
        torch.save({k: v.cpu() for k, v in student.state_dict().items()}, folder / f"local{local_rank}.pt")
        if local_rank == 0:
            (folder / "history.json").write_text(json.dumps(history.__dict__))
    finally:
        dist.destroy_process_group()


def torchrun_command(nproc: int, folder: Path, nodes: Nodes | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *(nodes or Nodes()).torchrun_args(),
        f"--nproc-per-node={nproc}",
        "-m",
        "edgekd.train.distributed",
        str(folder),
    ]


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
    nodes: Nodes | None = None,
) -> tuple[dict[str, torch.Tensor], TrainHistory, dict[str, Any]]:
    """Run ``recipe`` in ``nproc`` torchrun workers on this machine (joined with the other ``nodes``' workers);
    returns this machine's first rank's weights, its history, and how far this machine's ranks differ."""
    nodes = nodes or Nodes()
    device = torch.device(recipe.settings.device)
    if device.type == "cuda" and (device.index or 0) + nproc > torch.cuda.device_count():
        raise ConfigError(
            f"distill.nproc {nproc} from {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            "one per process is needed",
            fix=f"distill.nproc: {torch.cuda.device_count() - (device.index or 0)} or fewer (or device: cuda:0)",
        )
    job = {
        "recipe": dataclasses.asdict(recipe),
        "teacher_spec": teacher_spec.model_dump(mode="json"),
        "teacher_state": teacher_state,
        "student_spec": student_spec.model_dump(mode="json"),
        "student_state": student_state,
        "data": (to_plain(data.x), data.y),  # streamed images travel as their file list
        "val": (to_plain(val.x), val.y) if val is not None else None,
        "events_path": str(events_path) if events_path else None,
        "quiet": quiet,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory(prefix="edgekd-ddp-") as tmp:
        folder = Path(tmp)
        torch.save(job, folder / JOB)
        log = folder / "torchrun.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // nproc))}
        # PYTHONPATH so that the workers import this same edgekd (e.g. a source checkout)
        root = str(Path(__file__).resolve().parents[2])
        from edgekd.core.code_path import ADDED  # and the model.yaml folder, for builders kept there

        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH"), *ADDED) if p)
        with log.open("wb") as err:
            proc = subprocess.run(torchrun_command(nproc, folder, nodes), stderr=err, env=env, check=False)
        missing = [r for r in range(nproc) if not (folder / f"local{r}.pt").exists()]
        if proc.returncode != 0 or missing:
            reports = sorted(folder.glob("error-rank*.json"))
            if reports:  # the first rank's own error, e.g. a NaN loss naming the term that exploded
                first = json.loads(reports[0].read_text())
                raise TrainingError(
                    f"distributed distillation failed in {reports[0].stem.removeprefix('error-')}: "
                    f"{first['type']}: {first['message']}",
                    fix=first["fix"] or ONE_PROCESS,
                )
            raise TrainingError(
                f"distributed distillation failed (torchrun exit {proc.returncode}): {_last_line(log)}",
                fix=ONE_PROCESS,
            )
        states = [torch.load(folder / f"local{r}.pt", map_location="cpu", weights_only=True) for r in range(nproc)]
        raw = json.loads((folder / "history.json").read_text())
    diff = max(
        (float((states[0][k].float() - s[k].float()).abs().max()) for s in states[1:] for k in states[0]), default=0.0
    )
    history = TrainHistory(**raw)
    return (
        states[0],
        history,
        {
            "max_weight_difference_between_ranks": diff,
            "launcher": "torchrun",
            "backend": process_group_backend(device),
            "nodes": nodes.nnodes,
            "world_size": nproc * nodes.nnodes,
        },
    )


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return (lines or ["no output"])[-1][:400]


def _main(folder: Path) -> None:
    try:
        _worker(folder)
    except Exception as exc:  # reported to the parent, which raises it as a user-facing error
        fix = exc.fix if isinstance(exc, EdgekdError) else None
        report = {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)), "fix": fix}
        (folder / f"error-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(report))
        raise


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
