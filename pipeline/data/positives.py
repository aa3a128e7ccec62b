"""Which of two classes is the positive one (sensitivity is its recall), read from the class
names when ``dataset.positive_class`` is not set: a finding names a disease, its absence not."""

from __future__ import annotations

import re
import sys

from pipeline.common.errors import ConfigError, DataError

# Words that name a finding, and words that deny one ("non_covid", "no_finding", "negative").
FINDINGS = ("covid", "covid19", "covid_19", "sars", "pneumonia", "viral", "bacterial",
            "positive", "abnormal", "abnormality", "disease", "diseased", "pathology",
            "pathological", "opacity", "tuberculosis", "tb", "infection", "infected", "lesion",
            "malignant", "effusion", "sick", "finding")
DENIALS = ("non", "no", "not", "negative", "normal", "healthy", "clear", "benign")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]


def names_a_finding(name: str) -> bool:
    """True for 'covid', 'COVID-19', 'pneumonia', 'abnormal'; False for 'non_covid', 'normal'."""
    tokens = _tokens(name)
    if any(t in DENIALS for t in tokens):
        return False
    joined = "_".join(tokens)
    return any(t in FINDINGS for t in tokens) or joined in FINDINGS


def infer_positive(classes: list[str]) -> str:
    """The one class of two whose name names a finding; a DataError when it is not one."""
    found = [c for c in classes if names_a_finding(c)]
    if len(found) == 1:
        return found[0]
    why = "both name a finding" if found else "neither names a finding (covid, pneumonia, ...)"
    raise DataError(
        f"cannot tell which class is positive (sensitivity, precision and NPV are its): the "
        f"classes {classes} {why}; set dataset.positive_class=<one of {', '.join(classes)}>"
    )


def choose_positive(configured: object, classes: list[str]) -> str | None:
    """The positive class of a two-class task: ``dataset.positive_class``, else the inferred
    one (and a line saying so); None for other tasks."""
    if configured is not None and str(configured) not in classes:
        raise ConfigError(
            f"dataset.positive_class={configured!r} is not one of the classes {classes}: "
            f"set it to one of them (or null)"
        )
    if len(classes) != 2:
        return None
    if configured is not None:
        return str(configured)
    positive = infer_positive(classes)
    print(f"positive class: {positive} (read from the class names {', '.join(classes)}; set "
          f"dataset.positive_class to choose the other)", file=sys.stderr, flush=True)
    return positive
