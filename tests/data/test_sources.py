"""data.holdout_fraction: a seeded fraction of the labelled patients kept out of pretraining."""
import pandas as pd
import pytest

from radae.config import PipelineConfig
from radae.data.sources import holdout_patients


def _cfg(**data):
    return PipelineConfig.model_validate({"name": "t", "data": {"manifest": "m.csv", **data},
                                          "benchmark": {"classification": {"label": "label"}}})


def test_holdout_takes_a_seeded_fraction_of_labelled_patients_only():
    m = pd.DataFrame({"patient_id": [str(i) for i in range(20)], "label": [1.0, 0.0] * 5 + [None] * 10})
    got = holdout_patients(m, _cfg(holdout_fraction=0.5))
    assert len(got) == 5 and got <= {str(i) for i in range(10)}  # unlabelled patients always stay in pretraining
    assert got == holdout_patients(m, _cfg(holdout_fraction=0.5))
    assert holdout_patients(m, _cfg()) == set()
    with pytest.raises(ValueError):
        _cfg(holdout_fraction=1.0)
