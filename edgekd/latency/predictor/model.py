"""Latency predictor: a per-kernel-type latency table fitted on a device, summed over a model's fused kernels.

A model's batch-1 latency is predicted as

    overhead + input_ms_per_mb * input MB + sum over its kernels k of
        count_ms[type(k)] + ms_per_mmac[type(k)] * MMACs(k) + ms_per_mb[type(k)] * MB moved(k)

where the kernels come from :func:`edgekd.latency.predictor.kernels.detect` (ORT-style fusion of the exported graph,
with channels padded to the runtime's channel block) and the coefficients of each kernel type are fitted,
non-negative, on whole models measured on the device (``edgekd profile --build-predictor``,
:mod:`edgekd.latency.predictor.calibrate`), minimising relative error. Fitting
per-type linear models in MACs and bytes (rather than looking shapes up) lets unseen shapes be predicted.
The channel block (1: none, 8, 16) is not known in advance for a device: the table is fitted for each candidate
and the one with the lowest leave-one-out error on the measured models is kept (``channel_block`` in the file).

The file is JSON (``FORMAT``, ``VERSION``) and records the kind of file it predicts (``artifact`` onnx | tflite,
``precision`` fp32 | int8: :mod:`edgekd.latency.predictor.files`), the device, runtime, version and threads it was
measured with, the fitted coefficients, the fit quality, and every measurement it was fitted on (the table). A
predictor predicts files of its own kind only. Version 1 files (before kinds) are fp32 ONNX predictors.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.artifacts import atomic_write_bytes
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.files import PredictorKind, detect_file, file_kind
from edgekd.latency.predictor.fit import N_GLOBAL, fit
from edgekd.latency.predictor.kernels import Graph

_PLAIN_TYPES = ("dwconv", "gconv", "deconv", "gemm", "pool", "gpool", "eltwise", "other")
FORMAT = "edgekd-latency-predictor"
VERSION = 2
READS = (1, 2)  # version 1: fp32 ONNX predictors from before kinds were recorded


@dataclass
class Prediction:
    """A predicted latency and its breakdown: one row per kernel (type, nodes, ms), the overhead, the file used."""

    p50_ms: float
    overhead_ms: float
    kernels: list[dict[str, Any]]
    predictor: str
    where: str
    substituted: dict[str, str] = field(default_factory=dict)
    kind: str = "onnx-fp32"
    runtime: str | None = None

    def per_layer(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` slowest predicted kernels, in the shape of a measured per-layer profile."""
        total = sum(r["ms"] for r in self.kernels) or 1.0
        ranked = sorted(self.kernels, key=lambda r: -r["ms"])[:k]
        return [
            {"name": r["nodes"][0], "op_type": r["type"], "avg_ms": r["ms"], "share": r["ms"] / total} for r in ranked
        ]

    def to_latency(self, k: int = 5) -> dict[str, Any]:
        """A latency record (as in result.json) for this prediction: ``measured`` false, ``source`` predicted."""
        return {
            "p50_ms": self.p50_ms,
            "measured": False,
            "on_target": False,
            "source": "predicted",
            "where": self.where,
            "predictor": self.predictor,
            "predictor_kind": self.kind,
            "predictor_runtime": self.runtime,
            "overhead_ms": self.overhead_ms,
            "per_layer": self.per_layer(k),
            "substituted_kernel_types": self.substituted or None,
        }


@dataclass
class LatencyPredictor:
    """Fitted coefficients per kernel type, with where they were measured; ``predict`` takes an ONNX file."""

    types: dict[str, dict[str, float]]
    overhead_ms: float
    input_ms_per_mb: float
    device: dict[str, Any]
    cache_mb: float = 1e9
    ms_per_mb_beyond_cache: float = 0.0
    fit_quality: dict[str, Any] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    target: str = ""
    created: str = ""
    path: str = ""
    channel_block: int = 1
    kind: PredictorKind = field(default_factory=PredictorKind)

    # ------------------------------------------------------------------ build and save

    @classmethod
    def from_measurements(
        cls,
        rows: list[dict[str, Any]],
        device: dict[str, Any],
        target: str = "",
        ridge: float = 1e-3,
        max_spread: float = 0.25,
        kind: PredictorKind | None = None,
    ) -> LatencyPredictor:
        """Fit on ``rows`` ({name, p50_ms, graph: Graph, optional p50_spread}); rows whose repeated measurements
        disagree by more than ``max_spread`` (of their median) are kept in the table but not fitted on. The fit
        quality is from leave-one-out predictions. Rows may give ``graphs`` ({channel block: Graph}, one per
        candidate block, the same blocks in every row) instead of ``graph``: each block is fitted and the one with
        the lowest leave-one-out error is kept."""
        all_rows = rows
        rows = [r for r in rows if r.get("p50_spread", 0.0) <= max_spread]
        y = [float(r["p50_ms"]) for r in rows]
        if len(rows) < 4:
            raise ProfilingError(
                f"a latency predictor needs at least 4 stable measured models, got {len(rows)} of {len(all_rows)}",
                fix="build it with more calibration models (--models) or on a quieter device",
            )
        blocks = sorted(rows[0]["graphs"]) if "graphs" in rows[0] else [1]

        def graphs_of(rs: list[dict[str, Any]], block: int) -> list[Graph]:
            return [r["graphs"][block] if "graphs" in r else r["graph"] for r in rs]

        candidates = []
        for block in blocks:
            graphs = graphs_of(rows, block)
            types, coef, cache_mb = fit(graphs, y, ridge)
            pred = cls._from_coef(types, coef, cache_mb, device, target, block, kind or PredictorKind())
            loo = []
            for i in range(len(rows)):  # leave-one-out relative errors: how well unseen models are predicted
                rest = graphs[:i] + graphs[i + 1 :]
                t_i, c_i, _ = fit(rest, y[:i] + y[i + 1 :], ridge, cache_mb=cache_mb)
                p = pred._with(t_i, c_i, cache_mb).predict_graph(graphs[i], strict=False).p50_ms
                loo.append((p - y[i]) / y[i])
            err = np.abs(np.asarray(loo))
            candidates.append((float(np.median(err)), float(np.percentile(err, 90)), block, pred, err))
        _, _, block, pred, err = min(candidates, key=lambda c: (c[0], c[1]))
        pred.fit_quality = {
            "models": len(rows),
            "excluded_unstable": len(all_rows) - len(rows),
            "max_spread": max_spread,
            "channel_block": block,
            "leave_one_out": {
                "within_10pct": float((err <= 0.10).mean()),
                "median_abs_rel_error": float(np.median(err)),
                "p90_abs_rel_error": float(np.percentile(err, 90)),
            },
            "leave_one_out_median_by_channel_block": {str(c[2]): c[0] for c in candidates},
            "ridge": ridge,
        }
        pred.measurements = [
            {
                "name": r["name"],
                "p50_ms": r["p50_ms"],
                **{k: r[k] for k in ("spec", "p50_spread") if k in r},
                "input_bytes": g.input_bytes,
                "kernels": g.by_type(),
                "weight_bytes": g.weight_bytes,
                "predicted_ms": pred.predict_graph(g, strict=False).p50_ms,
                "fitted": r.get("p50_spread", 0.0) <= max_spread,
            }
            for r, g in zip(all_rows, graphs_of(all_rows, block), strict=True)
        ]
        return pred

    @classmethod
    def _from_coef(
        cls,
        types: list[str],
        coef: np.ndarray,
        cache_mb: float,
        device: dict[str, Any],
        target: str,
        channel_block: int = 1,
        kind: PredictorKind | None = None,
    ) -> LatencyPredictor:
        table = {}
        for i, t in enumerate(types):
            c, m, b = (float(v) for v in coef[N_GLOBAL + 3 * i : N_GLOBAL + 3 + 3 * i])
            table[t] = {"count_ms": c, "ms_per_mmac": m, "ms_per_mb": b}
        return cls(
            types=table,
            overhead_ms=float(coef[0]),
            input_ms_per_mb=float(coef[1]),
            device=device,
            cache_mb=cache_mb,
            ms_per_mb_beyond_cache=float(coef[2]),
            target=target,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            channel_block=channel_block,
            kind=kind or PredictorKind(),
        )

    def _with(self, types: list[str], coef: np.ndarray, cache_mb: float) -> LatencyPredictor:
        """A predictor with other coefficients (leave-one-out refits)."""
        return LatencyPredictor._from_coef(
            types, coef, cache_mb, self.device, self.target, self.channel_block, self.kind
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "created": self.created,
            "artifact": self.kind.artifact,
            "precision": self.kind.precision,
            "runtime": self.device.get("runtime"),
            "device": self.device,
            "model": "overhead + input_ms_per_mb*MB(input) + ms_per_mb_beyond_cache*max(0, MB(weights) - cache_mb) "
            "+ sum over kernels of count_ms[t] + ms_per_mmac[t]*MMACs + ms_per_mb[t]*MB "
            "(MACs and MB with channels padded to channel_block)",
            "channel_block": self.channel_block,
            "overhead_ms": self.overhead_ms,
            "input_ms_per_mb": self.input_ms_per_mb,
            "cache_mb": self.cache_mb,
            "ms_per_mb_beyond_cache": self.ms_per_mb_beyond_cache,
            "kernel_types": self.types,
            "fit": self.fit_quality,
            "measurements": self.measurements,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        self.path = str(path)
        return atomic_write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyPredictor:
        p = Path(path)
        fix = "build it with: edgekd profile --build-predictor --target <target>"
        if not p.is_file():
            raise ProfilingError(f"latency predictor {p}: file not found", fix=fix)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ProfilingError(f"latency predictor {p}: not valid JSON ({exc})", fix=fix) from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ProfilingError(f"latency predictor {p}: not an edgekd predictor file (format != {FORMAT!r})", fix=fix)
        if doc.get("version") not in READS:
            raise ProfilingError(
                f"latency predictor {p}: version {doc.get('version')!r}, this edgekd reads versions "
                f"{', '.join(map(str, READS))}",
                fix=fix,
            )
        try:
            types = {str(t): {k: float(v[k]) for k in ("count_ms", "ms_per_mmac", "ms_per_mb")}
                     for t, v in doc["kernel_types"].items()}  # fmt: skip
            return cls(
                types=types,
                overhead_ms=float(doc["overhead_ms"]),
                input_ms_per_mb=float(doc.get("input_ms_per_mb", 0.0)),
                cache_mb=float(doc.get("cache_mb", 1e9)),
                ms_per_mb_beyond_cache=float(doc.get("ms_per_mb_beyond_cache", 0.0)),
                device=dict(doc.get("device", {})),
                fit_quality=dict(doc.get("fit", {})),
                measurements=list(doc.get("measurements", [])),
                target=str(doc.get("target", "")),
                created=str(doc.get("created", "")),
                path=str(p),
                channel_block=int(doc.get("channel_block", 1)),
                kind=PredictorKind(str(doc.get("artifact", "onnx")), str(doc.get("precision", "fp32"))),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfilingError(f"latency predictor {p}: malformed ({type(exc).__name__}: {exc})", fix=fix) from exc

    # ------------------------------------------------------------------ predict

    @property
    def where(self) -> str:
        d = self.device
        return (
            f"predicted by {Path(self.path).name or 'the latency predictor'} ({self.kind.describe} kernel table "
            f"measured on {d.get('where', d.get('machine', '?'))})"
        )

    def _substitute(self, t: str) -> str | None:
        """The measured kernel type that predicts ``t``: itself; else the same operation at another channel
        alignment (nearest first); for a convolution of an unmeasured kernel size, the measured size nearest to it
        (ties: the larger); a global pool from a table that has only ``pool`` (files from before ``gpool``). The
        same rules hold among INT8 (``q``) kernels; an INT8 kernel is never predicted from an fp32 one."""
        if t in self.types:
            return t
        if t == "gpool" and "pool" in self.types:  # tables built before global pools had their own type
            return "pool"
        q = "q" if t.startswith("qconv") or (t.startswith("q") and t[1:] in _PLAIN_TYPES) else ""
        base, _, align = t[len(q) :].partition(".")
        order = {"a16": ["a16", "a8", ""], "a8": ["a8", "a16", ""], "": ["", "a8", "a16"]}.get(align, [align, ""])
        for a in order:
            cand = q + (f"{base}.{a}" if a else base)
            if cand in self.types:
                return cand
        if base.startswith("conv") and base[4:5].isdigit():
            want = int(base[4])
            n = len(q) + 4  # the kernel size's position in the key
            sizes = sorted(
                {int(k[n]) for k in self.types if k.startswith(q + "conv") and k[n : n + 1].isdigit()},
                key=lambda v: (abs(v - want), -v),
            )
            for size in sizes:
                for a in order:
                    cand = f"{q}conv{size}x{size}" + (f".{a}" if a else "")
                    if cand in self.types:
                        return cand
        return None

    def predict_graph(self, graph: Graph, name: str = "model", strict: bool = True) -> Prediction:
        """Predicted latency of ``graph``; an unmeasured kernel type raises (``strict``) or costs nothing."""
        rows = []
        substituted: dict[str, str] = {}
        missing: set[str] = set()
        for k in graph.kernels:
            t = self._substitute(k.type)
            if t is None:
                # a shape-only kernel, or a layout change, that no calibration model had: the device does not
                # pay for it (every calibration set has models with mixed channel alignments)
                if k.type in ("reshape", "reorder"):
                    rows.append({"type": k.type, "nodes": k.nodes, "ms": 0.0})
                    continue
                missing.add(k.type)
                continue
            if t != k.type:
                substituted[k.type] = t
            c = self.types[t]
            ms = c["count_ms"] + c["ms_per_mmac"] * k.macs * 1e-6 + c["ms_per_mb"] * k.bytes * 1e-6
            rows.append({"type": k.type, "nodes": k.nodes, "ms": ms, "macs": k.macs, "bytes": k.bytes})
        if missing and strict:
            raise ProfilingError(
                f"{name}: the latency predictor {self.path or ''} has no measurements for kernel type(s) "
                f"{', '.join(sorted(missing))}",
                fix=(
                    "INT8 kernels are predicted by the target's INT8 predictor: edgekd profile --build-predictor "
                    "--target <target> --precision int8"
                    if self.kind.precision == "fp32" and any(t.startswith("q") for t in missing)
                    else "rebuild the predictor with calibration models that contain them (edgekd profile "
                    f"--build-predictor --precision {self.kind.precision})"
                ),
            )
        overhead = (
            self.overhead_ms
            + self.input_ms_per_mb * graph.input_bytes * 1e-6
            + self.ms_per_mb_beyond_cache * max(0.0, graph.weight_bytes * 1e-6 - self.cache_mb)
        )
        total = overhead + sum(r["ms"] for r in rows)
        return Prediction(
            total, overhead, rows, self.path, self.where, substituted, self.kind.key, self.device.get("runtime")
        )

    def check_kind(self, model_path: str | os.PathLike[str]) -> None:
        """ProfilingError unless ``model_path`` is a file of the kind this predictor predicts."""
        kind = file_kind(model_path)
        if kind != self.kind:
            raise ProfilingError(
                f"{model_path} is a {kind.describe} file; the latency predictor {self.path or ''} predicts "
                f"{self.kind.describe} files (a kernel table of one runtime and precision says nothing of another)",
                fix=f"build the {kind.key} predictor of the target: edgekd profile --build-predictor --target "
                f"{self.target or '<target>'} --precision {kind.precision}"
                + (" (a target that ships .tflite)" if kind.artifact != self.kind.artifact else ""),
            )

    def predict(self, model_path: str | os.PathLike[str], batch: int = 1) -> Prediction:
        """Predicted batch-``batch`` p50 of a model file of this predictor's kind on the device the table was
        measured on (ProfilingError for a file of another kind)."""
        self.check_kind(model_path)
        return self.predict_graph(detect_file(model_path, batch, self.channel_block), str(model_path))

    def predict_module(self, model: Any, input_shape: tuple[int, ...], settings: Any = None) -> Prediction:
        """Predicted latency of a PyTorch module, first written as a temporary file of this predictor's kind
        (:func:`edgekd.latency.predictor.artifacts.write_artifact`; ``settings``: the target's ArtifactSettings)."""
        from edgekd.latency.predictor.artifacts import write_artifact

        with tempfile.TemporaryDirectory(prefix="edgekd-predict-") as tmp:
            path = write_artifact(model, input_shape, self.kind, Path(tmp) / "candidate", settings)
            return self.predict(path)
