"""The kinds of value config keys take, named once for every schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pipeline.config.schema.rules import Range

# A number that keeps its kind: an integer stays one (trainer.limit_train_batches=2 is two
# batches, 2.0 a fraction), and a logged value reads as it was given.
Number = int | float
Fraction = Annotated[Number, Range(0, 1)]
Positive = Annotated[int, Range(1)]
NonNegative = Annotated[int, Range(0)]
AutoOrBool = Annotated[bool | str, Literal["auto", True, False]]
Direction = Annotated[str, Literal["maximize", "minimize"]]
