"""Model A vs model B on the same images: is the difference measurable?

:func:`compare` scores two trained classifiers of one grouping on one split, pairs their
predictions image by image (:func:`fer_jax.stats.paired_comparison`: paired bootstrap CIs of the
accuracy, macro-F1 and disgust-AP differences, McNemar's exact p) and, on the test split, appends
a record to each model's test ledger (:mod:`fer_jax.provenance`).
"""

from __future__ import annotations

import pathlib
import time

from fer_jax import evaluation, provenance, stats
from fer_jax.data.dataset import FerData
from fer_jax.errors import FerError
from fer_jax.inference import Classifier


def compare(a: Classifier, b: Classifier, data: FerData, split: str, *,
            data_path: str | pathlib.Path | None, workdirs: tuple[str, str], tta: bool = False,
            focus_class: str = "disgust", resamples: int = stats.RESAMPLES,
            seed: int = 0) -> dict:
    """The comparison JSON: both models (description, steps, accuracy and macro-F1), the
    fields of :func:`fer_jax.stats.paired_comparison` and a reproducibility block. On
    ``split == "test"``, appends to the test ledger of each of ``workdirs`` (A's, B's)."""
    if a.grouping != b.grouping:
        raise FerError(f"the models predict different groupings ({a.grouping.name!r} vs "
                       f"{b.grouping.name!r}): compare models of one grouping")
    start = time.perf_counter()
    images = data.split(split)
    labels, probs_a = evaluation.predict_split(a, images, a.grouping, tta=tta)
    _, probs_b = evaluation.predict_split(b, images, b.grouping, tta=tta)
    result = stats.paired_comparison(labels, probs_a, probs_b, a.class_names,
                                     focus_class=focus_class, resamples=resamples, seed=seed)
    wall_seconds = time.perf_counter() - start
    data_block = provenance.data_block(data_path, data)
    models = {}
    for key, classifier, workdir in (("a", a, workdirs[0]), ("b", b, workdirs[1])):
        metrics = {name: result[name][key] for name in ("accuracy", "macro_f1")}
        models[key] = {"workdir": str(workdir), "model": classifier.description,
                       "steps": classifier.steps, **metrics}
        if split == "test":
            provenance.append_test_record(workdir, provenance.ledger_record(
                classifier, data=data_block, metrics=metrics, wall_seconds=wall_seconds))
    block = provenance.reproducibility(
        data=data_block, wall_seconds=wall_seconds,
        config={key: provenance.classifier_config(c) for key, c in (("a", a), ("b", b))},
        seeds=provenance.classifier_seeds(a) + provenance.classifier_seeds(b))
    return {**models, **result, "split": split, "tta": tta, "grouping": a.grouping.name,
            "data": data.source, "synthetic": data.synthetic, "reproducibility": block}


def format_comparison(result: dict) -> str:
    """The comparison as a text table: per metric A, B, A - B, its CI, McNemar's p (accuracy)
    and the verdict."""
    percent = round(100 * result["confidence"])
    rows = [("accuracy", result["accuracy"]), ("macro F1", result["macro_f1"])]
    if result["ap"] is not None:
        rows.append((f"AP {result['ap']['class']}", result["ap"]))
    lines = [f"A: {result['a']['model']}", f"B: {result['b']['model']}",
             (f"{result['split']} of {result['data']}"
              f"{f' ({evaluation.SYNTHETIC_NOTE})' if result['synthetic'] else ''}: "
              f"{result['n']} images, "
              f"{result['resamples']} paired bootstrap resamples (seed {result['seed']})"),
             (f"{'':<12} {'A':>7} {'B':>7} {'A - B':>7}  {f'{percent}% CI':<17} "
              f"{'McNemar p':>9}  verdict")]
    for name, row in rows:
        interval = "[{:+.1f}, {:+.1f}]".format(*(100 * bound for bound in row["ci"]))
        p = f"{row['mcnemar_p']:.3g}" if "mcnemar_p" in row else ""
        lines.append(f"{name:<12} {100 * row['a']:>6.1f}% {100 * row['b']:>6.1f}% "
                     f"{100 * row['difference']:>+7.1f}  {interval:<17} {p:>9}  "
                     f"{row['verdict']}")
    return "\n".join(lines)
