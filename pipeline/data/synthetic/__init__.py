"""Embedded synthetic chest radiographs, so the whole pipeline runs with nothing on disk.

Each image is rendered from a parametric PA chest model evaluated on a coordinate grid: soft tissue,
lung fields, heart, mediastinum and spine, posterior and anterior ribs, clavicles, hila, vessels and
diaphragm domes, then exposure, quantum noise and blur. Findings are drawn on top: peripheral
lower-zone ground glass (covid), lobar consolidation (bacterial pneumonia) or a perihilar reticular
pattern (viral pneumonia). Severity varies per image down to nearly invisible, and distractors
(breast shadows, electrodes, buttons, side markers, granulomas) appear in every class, so a small
CNN learns the task well above chance but not perfectly.

Everything is drawn from a seeded ``numpy.random.Generator``: the same arguments give byte-identical
images. Anatomy is in size-independent coordinates, so any ``image_size`` shows the same patients.

The package: ``generator`` (the call, its checks and every image's parameters), ``anatomy`` (one
chunk rendered), ``findings`` (findings and distractors drawn on top), ``frame`` (a chunk's grids
and fields), ``shapes`` (soft masks, random fields, blur), ``constants``.
"""

from pipeline.data.synthetic.constants import CLASS_NAMES
from pipeline.data.synthetic.generator import SyntheticData, generate

__all__ = ["CLASS_NAMES", "SyntheticData", "generate"]
