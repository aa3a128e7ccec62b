"""The real covid-chestxray sample (JPEG/PNG in L, RGB, RGBA and P, up to 4280 px), decoded once
for the module at a small size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import compose
from pipeline.data.bundle import DataBundle, load_data
from pipeline.data.images import decode_image

SIZE = 32


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataBundle, pd.DataFrame]:
    sample = Path(__file__).resolve().parents[2].parent / "shared/data/covid-chestxray-sample"
    if not (sample / "metadata.csv").is_file():
        pytest.skip(f"{sample} is not there")
    state = tmp_path_factory.mktemp("state")
    bundle = load_data(compose(["dataset=covid_chestxray", f"dataset.image_size={SIZE}",
                                f"state_dir={state}"]))
    meta = pd.read_csv(sample / "metadata.csv", dtype=str, keep_default_na=False)
    return bundle, meta.set_index("filename")


def test_filters_drop_ct_lateral_and_todo(real) -> None:
    bundle, meta = real
    rows = meta.loc[[Path(f).name for f in bundle.files]]
    assert set(rows.modality) == {"X-ray"}
    assert "L" not in set(rows.view) and set(rows.view) <= {"PA", "AP", "AP Supine", "AP Erect"}
    assert "todo" not in set(rows.finding.str.lower())
    labels = [bundle.classes[i] for i in bundle.labels]
    assert all((lab == "covid") == ("COVID-19" in f) for lab, f in zip(labels, rows.finding,
                                                                       strict=True))


def test_patients_grouped_and_every_image_decoded(real) -> None:
    bundle, meta = real
    assert bundle.patient_overlap() == 0 and not bundle.skipped
    rows = meta.loc[[Path(f).name for f in bundle.files]]
    assert bundle.patients.tolist() == rows.patientid.tolist()
    for split in ("train", "val", "test"):
        assert all(n > 0 for n in bundle.class_counts(split).values())
    assert bundle.images.shape == (len(bundle.files), SIZE, SIZE)
    assert (bundle.images.reshape(len(bundle.files), -1).std(axis=1) > 5).all()  # no blank image


def test_prediction_decode_matches_the_cache(real) -> None:
    bundle, _ = real
    for row in (0, len(bundle.files) // 2, len(bundle.files) - 1):
        fresh = decode_image(bundle.root / bundle.files[row], SIZE)
        assert np.array_equal(fresh, bundle.images[row])
