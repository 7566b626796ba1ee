"""A finished test's record: scores.csv, results.json's layout, the HParams record, and the run's last line."""

from __future__ import annotations

import logging
import math

from adrun import loggers
from adrun.artefacts import RunDir, versions
from adrun.calibration import threshold_facts
from adrun.stats import BELOW_CHANCE, INTERVAL_METHOD, PIXEL_INTERVAL_METHOD

log = logging.getLogger("adrun")


def record(plan, run: RunDir, trainer, evaluator, built: tuple, fit_seconds: float, rates: dict) -> dict:
    """Writes what the test pass measured and says it in one line; returns results.json's contents."""
    module, datamodule = built
    outputs, metrics = evaluator.outputs, evaluator.metrics
    run.write_scores(outputs, datamodule.sample_id, datamodule.sample_type)
    normal_class = list(datamodule.normal_classes)  # as the protocol resolved it (leave-one-out, Caltech)
    results = {
        "status": "ok",
        **plan.facts,
        "normal_class": normal_class,
        "normal_class_names": [datamodule.classes[c] for c in normal_class],
        "metrics": {key: None if value != value else value for key, value in metrics.items()},  # NaN → null
        "image_auroc_ci95": interval(metrics),
        "interval_method": INTERVAL_METHOD,
        **pixel_interval(metrics),
        "counts": {
            "train": len(datamodule.train_set),
            "val": len(datamodule.val_set),
            "test": len(outputs.labels),
            "test_anomalous": int(outputs.labels.sum()),
        },
        "timings": {"fit_s": fit_seconds, **rates},
        "mode": plan.mode,
        "threshold": threshold_facts(module, plan.config["threshold"], plan.config["threshold_quantile"]),
        "processes": trainer.world_size,
        "continued_from": plan.start,
        "method_notes": module.method_notes(),
        "versions": versions(),
    }
    run.write_results(results)
    loggers.log_hparams(trainer, hparams_of(plan, normal_class), metrics)
    loggers.finish(trainer)
    normal = datamodule.normal_description(normal_class)
    log.info(last_line(plan, run, metrics, evaluator.threshold, normal, loggers.where(trainer.loggers)))
    return results


def last_line(plan, run: RunDir, metrics: dict, threshold: float | None, normal: str, view: str) -> str:
    """`ganomaly on digits (normal: 0): image AUROC 0.9874 · at threshold …: FPR …, TPR … · results in … · view: …`"""
    at = (
        ""
        if threshold is None
        else (
            f" · at threshold {threshold:.4g}: FPR {metrics['image_fpr_at_threshold']:.3f}, "
            f"TPR {metrics['image_tpr_at_threshold']:.3f}"
        )
    )
    pixel = "".join(
        f" · {name} {metrics[key]:.4f}{bracket(interval(metrics, key))}"
        for key, name in (("pixel_auroc", "pixel AUROC"), ("pixel_aupro", "AUPRO"))
        if metrics.get(key) == metrics.get(key) and key in metrics  # present and not NaN
    )
    image = interval(metrics)
    below = f" · BELOW CHANCE: {BELOW_CHANCE}" if image and image[1] < 0.5 else ""
    return (
        f"{plan.facts['method']} on {plan.facts['data']} (normal: {normal}): image AUROC {metrics['image_auroc']:.4f}"
        f"{bracket(image)}{below}{pixel}{at} · results in {run.path}{f' · view: {view}' if view else ''}"
    )


def interval(metrics: dict, key: str = "image_auroc") -> list[float] | None:
    """[low, high] of an AUROC's 95 % interval; None where it has none (one class in the test set, no masks)."""
    low, high = metrics.get(f"{key}_ci95_lo", math.nan), metrics.get(f"{key}_ci95_hi", math.nan)
    return None if low != low or high != high else [low, high]


def pixel_interval(metrics: dict) -> dict:
    """results.json's pixel AUROC interval and how it was made, where the data have masks."""
    found = interval(metrics, "pixel_auroc")
    return {} if found is None else {"pixel_auroc_ci95": found, "pixel_interval_method": PIXEL_INTERVAL_METHOD}


def bracket(found: list[float] | None) -> str:
    return "" if found is None else f" [{found[0]:.3f}, {found[1]:.3f}]"


def hparams_of(plan, normal_class: list[int]) -> dict:
    """What the HParams tab compares: the choices, the seed, the protocol, and the method's scalar hyperparameters."""
    cfg = plan.cfg
    params = {"method": plan.facts["method"], "data": plan.facts["data"], "seed": cfg.seed}
    params |= {"normal_class": str(normal_class), "data.image_size": cfg.data.image_size}
    for key in ("train_subset", "test_subset"):
        params[f"data.{key}"] = str(cfg.data[key])
    params["data.channels"] = cfg.data.channels
    for key, value in plan.config["method"].items():
        if key != "_target_" and isinstance(value, int | float | str | bool):
            params[f"method.{key}"] = value
    return params
