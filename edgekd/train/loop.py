"""The training loop shared by teacher training and distillation.

A loss is a callable ``(logits, labels, index, inputs) -> {term: weighted tensor}``; the
total is the sum of the terms, so a diverging run can name the term that exploded.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from edgekd.core.device import AMP, module_device, on_device
from edgekd.core.errors import TrainingError
from edgekd.data.augment import mask_tokens, randaugment, random_crop_flip, random_resized_crop
from edgekd.data.dataset import Split
from edgekd.data.stream import batches, is_streamed

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


class ProgressSink(Protocol):
    """What the loop reports to: a rich progress bar in the CLI, a no-op in tests."""

    def start(self, name: str, total: int) -> None: ...
    def advance(self, n: int = 1, **fields: float) -> None: ...
    def finish(self, **fields: float) -> None: ...


class NullProgress:
    def start(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1, **fields: float) -> None:
        pass

    def finish(self, **fields: float) -> None:
        pass


@dataclass
class TrainSettings:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | linear (10% warm-up, then linear decay) | constant
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw (momentum is unused; the usual choice for transformers)
    augment: bool = True
    crop_pad: int = 2
    flip: bool = True
    crop: str = "pad"  # pad: pad-and-crop by crop_pad | resized: random-resized crop (area share in scale) | none
    scale: tuple[float, float] = (0.08, 1.0)
    randaugment: tuple[int, int] | None = None  # (operations per image, magnitude 0..10)
    # text: share of real tokens replaced by the mask token; (mask id, ids never masked, input_ids row, attention
    # mask row or -1) of the packed inputs
    token_mask: float = 0.0
    token_ids: tuple[int, tuple[int, ...], int, int] | None = None
    seed: int = 0
    threads: int | None = None
    patience: int | None = None  # stop after this many epochs without a better validation accuracy
    device: str = "cpu"  # where the steps run (a resolved torch device); the model comes back where it was
    amp: str | None = None  # autocast dtype: bf16 | fp16 (fp16 with a gradient scaler)


# settings that change where or how fast a run computes, not what it trains: a saved state continues under others
_PLACEMENT = ("device", "threads")


@dataclass
class TrainHistory:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0
    stopped_early: bool = False


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, keep_on_device: bool = False) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode (the model's mode is restored afterwards), computed on the
    model's device; returned on the CPU unless ``keep_on_device``."""
    was_training = model.training
    model.eval()
    dev = module_device(model)
    out = [model(x[i : i + batch_size].to(dev, non_blocking=True)).float() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    logits = torch.cat(out) if out else torch.empty(0)
    return logits if keep_on_device else logits.cpu()


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent."""
    if len(split) == 0:
        return float("nan")
    logits = predict(model, split.x, batch_size)
    return float((logits.argmax(1) == split.y).float().mean() * 100)


def augment_batch(x: torch.Tensor, s: TrainSettings, gen: torch.Generator) -> torch.Tensor:
    """The training augmentation ``s`` describes, drawn from ``gen`` (the same on every device)."""
    if s.token_mask > 0:
        if s.token_ids is None:
            raise ValueError("token_mask needs token_ids (mask id, kept ids, input_ids row, attention mask row)")
        mask_id, keep, ids_row, attention_row = s.token_ids
        return mask_tokens(x, s.token_mask, mask_id, tuple(keep), ids_row, None if attention_row < 0 else attention_row,
                           gen)  # fmt: skip
    if not x.is_floating_point():
        raise ValueError(f"image augmentation on {x.dtype} inputs (token inputs take token_mask)")
    if s.crop == "resized":
        x = random_resized_crop(x, s.scale, (3 / 4, 4 / 3), s.flip, gen)
    else:
        x = random_crop_flip(x, s.crop_pad if s.crop == "pad" else 0, s.flip, gen)
    if s.randaugment is not None:
        x = randaugment(x, s.randaugment[0], s.randaugment[1], gen)
    return x


def make_optimizer(params: list[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {s.optimizer!r} (sgd, adamw)")
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0)


def _linear(steps: int) -> Callable[[int], float]:
    warm = max(1, round(steps * 0.1))
    return lambda i: (i + 1) / warm if i < warm else max(0.0, (steps - i) / max(1, steps - warm))


def _scheduler(opt: torch.optim.Optimizer, s: TrainSettings, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if s.schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, _linear(steps))
    if s.schedule == "onecycle" and steps >= 8:  # OneCycle needs a few steps per phase
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=steps, pct_start=0.25)
    if s.schedule in ("cosine", "onecycle"):
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def train(
    model: nn.Module,
    data: Split,
    loss_fn: LossFn,
    settings: TrainSettings,
    val: Split | None = None,
    progress: ProgressSink | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    extra_params: list[nn.Parameter] | None = None,
    resume: Path | None = None,
) -> TrainHistory:
    """Train ``model`` in place; keep the weights of the epoch with the best validation accuracy.

    The steps run on ``settings.device`` (batches are drawn and augmented on the CPU, with the same random
    numbers on every device, then moved); the model is returned where it was. ``extra_params`` (e.g. FitNets
    regressors) are optimised with the model but not part of it; they must already be on that device.
    ``resume``: a file where the whole training state (weights, optimizer, schedule, random generators, history)
    is written after every epoch; when it exists, training continues from it, exactly as if it had not stopped
    (same settings required; the device and threads may differ). Long trainings survive a crash or a new
    machine this way. ``settings.threads`` holds for this training only: the thread count is restored after.
    """
    if len(data) == 0:
        raise TrainingError("the training split is empty", fix="check data.* in model.yaml (fraction, limits, path)")
    device = torch.device(settings.device)
    strays = [p for p in extra_params or [] if p.device != device]
    if strays:
        raise ValueError(f"{len(strays)} extra parameter(s) are on {strays[0].device}, not on {device}")
    threads = torch.get_num_threads()
    try:
        with on_device(model, device):
            return _train(model, data, loss_fn, settings, device, val, progress, on_epoch, extra_params, resume)
    finally:  # ``settings.threads`` is this training's: the caller's process keeps its own thread count
        torch.set_num_threads(threads)


def _train(
    model: nn.Module, data: Split, loss_fn: LossFn, settings: TrainSettings, device: torch.device,
    val: Split | None, progress: ProgressSink | None, on_epoch: Callable[[dict[str, float]], None] | None,
    extra_params: list[nn.Parameter] | None, resume: Path | None,
) -> TrainHistory:  # fmt: skip
    progress = progress or NullProgress()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    opt = make_optimizer([*model.parameters(), *(extra_params or [])], settings)
    amp = AMP.get(settings.amp or "")
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
    # data parallel (torch.distributed initialised, e.g. torchrun DDP workers): a DistributedSampler
    # gives every rank its own equal shard of one seeded permutation per epoch
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    sampler = (
        DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=settings.seed, drop_last=True)  # type: ignore[arg-type]
        if world > 1
        else None
    )
    shard = len(data) // world if world > 1 else len(data)
    if shard == 0:
        raise TrainingError(
            f"{len(data)} training images cannot be split over {world} processes",
            fix="use fewer processes (distill.nproc)",
        )
    steps_per_epoch = math.ceil(shard / settings.batch_size)
    sched = _scheduler(opt, settings, steps_per_epoch * settings.epochs)
    history = TrainHistory()
    best_state = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    first = 0
    if resume is not None and resume.is_file():
        first, best_state, done_seconds = _load_state(resume, settings, model, opt, sched, gen, history, scaler)
        start -= done_seconds
    for epoch in range(first, settings.epochs):
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.long)
        else:
            order = torch.randperm(len(data), generator=gen)
        progress.start(f"epoch {epoch + 1}/{settings.epochs}", steps_per_epoch)
        sums: dict[str, float] = {}
        seen = 0
        steps = [
            order[step * settings.batch_size : (step + 1) * settings.batch_size] for step in range(steps_per_epoch)
        ]
        streamed = batches(data.x, steps, data.x.workers) if is_streamed(data.x) else None  # type: ignore[attr-defined]
        for step, idx in enumerate(steps):
            x = next(streamed) if streamed is not None else data.x[idx]  # streamed: decoded ahead by the workers
            y = data.y[idx]
            if settings.augment:
                x = augment_batch(x, settings, gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                terms = loss_fn(model(x), y, idx, x)
                total = sum(terms.values())
            assert isinstance(total, torch.Tensor)
            if not torch.isfinite(total):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)] or list(terms)
                raise TrainingError(
                    f"loss became {total.item()} at epoch {epoch + 1}, step {step + 1}: "
                    f"term(s) {', '.join(bad)} exploded",
                    fix="lower the learning rate or the weight of that term",
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if world > 1:  # parameters outside the DDP model (e.g. FitNets regressors): average by hand
                for p in extra_params or []:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= world
            scaler.step(opt)
            scaler.update()
            sched.step()
            seen += len(idx)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            progress.advance(1, loss=float(total.detach()), **{k: v / seen for k, v in sums.items()})
        record = {"epoch": float(epoch + 1), **{f"loss_{k}": v / seen for k, v in sums.items()}}
        if world > 1:  # BN statistics differ per shard: every rank continues with rank 0's
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        if val is not None and len(val):
            record["val_accuracy"] = accuracy(model, val)
            if not (record["val_accuracy"] <= history.best_val_accuracy):  # first epoch or better
                history.best_val_accuracy = record["val_accuracy"]
                history.best_epoch = epoch + 1
                best_state = copy.deepcopy(model.state_dict())
        else:
            history.best_epoch = epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        history.epochs.append(record)
        if resume is not None and rank == 0:
            _save_state(resume, epoch + 1, settings, model, opt, sched, gen, history, best_state, start, scaler)
        progress.finish(**{k: v for k, v in record.items() if k != "epoch"})
        if on_epoch:
            on_epoch(record)
        if (
            settings.patience is not None
            and history.best_epoch > 0
            and epoch + 1 - history.best_epoch >= settings.patience
        ):
            history.stopped_early = True
            break
    model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _PLACEMENT}


def _save_state(
    path: Path, epochs_done: int, settings: TrainSettings, model: nn.Module, opt: Any, sched: Any,
    gen: torch.Generator, history: TrainHistory, best_state: dict[str, Any], start: float, scaler: Any,
) -> None:  # fmt: skip
    from edgekd.core.artifacts import atomic_write_bytes

    state = {
        "epochs_done": epochs_done,
        "settings": dict(settings.__dict__),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": {
            "epochs": history.epochs,
            "best_epoch": history.best_epoch,
            "best_val_accuracy": history.best_val_accuracy,
        },
        "best_state": {k: v.cpu() for k, v in best_state.items()},
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "seconds": time.perf_counter() - start,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_state(
    path: Path, settings: TrainSettings, model: nn.Module, opt: Any, sched: Any, gen: torch.Generator,
    history: TrainHistory, scaler: Any,
) -> tuple[int, dict[str, Any], float]:  # fmt: skip
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {**TrainSettings().__dict__, **state["settings"]}  # a state from before a setting existed: its default
    if _comparable(saved) != _comparable(dict(settings.__dict__)):
        raise TrainingError(
            f"{path}: the saved training ran with other settings ({state['settings']}), not {settings.__dict__}",
            fix=f"give the same settings to continue it, or delete {path} to start again",
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    history.epochs = list(state["history"]["epochs"])
    history.best_epoch = state["history"]["best_epoch"]
    history.best_val_accuracy = state["history"]["best_val_accuracy"]
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return int(state["epochs_done"]), state["best_state"], float(state["seconds"])


_MEMO: dict[tuple[str, str, str], torch.Tensor] = {}
_MEMO_SIZE = 2


def _digest(tensors: list[torch.Tensor]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        if is_streamed(t):  # named by its files, not decoded
            h.update(t.sha256().encode())  # type: ignore[attr-defined]
            continue
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def teacher_predictions(teacher: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The teacher's logits on ``x``, computed and kept on ``device`` (where the student trains), and remembered
    in this process by (teacher weights, inputs, device): a compile whose distill, prune and quantize passes all
    train against the same teacher on the same data pays one teacher pass."""
    device = torch.device(device)
    key = (_digest(list(teacher.state_dict().values())), _digest([x]), str(device))
    if key not in _MEMO:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        with on_device(teacher, device):
            _MEMO[key] = predict(teacher, x, keep_on_device=True)
    return _MEMO[key]
