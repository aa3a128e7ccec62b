"""What the comparison supports, in words: each comparison with the champion after Holm's
adjustment ("no significant difference detected", never "the same"), a backbone significantly
better than the champion on test, a validation ranking that reverses on test, a reused test
split, the search gain over the papers' recipes."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.selection.assessment import Assessed
from pipeline.selection.recipes import Recipes

LEVEL = 0.05


def p_text(p: float) -> str:
    """0.41, 0.013, < 0.001."""
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.2f}" if p >= 0.01 else f"= {p:.3f}"


def comparison_sentence(champion: Assessed, other: Assessed) -> str | None:
    """One comparison with the champion, worded by its Holm-adjusted p-value."""
    versus, p = other.versus_champion, other.p_holm
    if versus is None or p is None or p != p:  # NaN: AUROC undefined on this test set
        return None
    low, high = versus.delta_ci
    delta = (f"ΔAUROC {versus.delta_auroc:+.3f} [{low:+.3f}, {high:+.3f}], Holm-adjusted p "
             f"{p_text(p)}, {versus.test}")
    if p >= LEVEL:
        return (f"{other.backbone} against the champion {champion.backbone}: no significant "
                f"difference detected (Holm-adjusted p {p_text(p)})")
    if versus.delta_auroc > 0:
        return (f"{other.backbone} is significantly better than the champion "
                f"{champion.backbone} on test ({delta}): the validation ranking does not hold "
                "on test")
    return f"the champion {champion.backbone} is significantly better than {other.backbone} " \
           f"on test ({delta})"


def reversal_sentence(champion: Assessed, other: Assessed) -> str | None:
    """When a model ranked below the champion on validation scores higher on test."""
    versus = other.versus_champion
    if versus is None or not versus.delta_auroc > 0 or (other.p_holm or 1.0) < LEVEL:
        return None  # not higher, or already said as significantly better
    return (f"the validation ranking reverses on test: {other.backbone} has a higher test AUROC "
            f"than the champion {champion.backbone} ({other.test.values['auroc']:.3f} against "
            f"{champion.test.values['auroc']:.3f}), though ranked below it on validation")


def uses_sentence(uses: int) -> str | None:
    return (f"this test split has now been used for selection {uses} times" if uses > 1
            else None)


def sentences(assessed: Sequence[Assessed], recipes: Recipes | None, uses: int) -> list[str]:
    """Everything the table's reader should be told, in order."""
    champion = assessed[0]
    out: list[str | None] = []
    for other in assessed[1:]:
        out += [comparison_sentence(champion, other), reversal_sentence(champion, other)]
    for item in assessed:
        if item.degenerate:
            out.append(f"{item.backbone}: degenerate operating point ("
                       f"{'; '.join(item.degenerate)})")
    if recipes is not None:
        out += [recipes.test_sentence(), recipes.validation_sentence()]
    out.append(uses_sentence(uses))
    return [s for s in out if s]
