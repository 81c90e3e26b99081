"""extract/outcomes.csv and id columns that stay text."""
import pandas as pd

from radae.features.outcomes import outcomes_table, read_csv_ids, write_outcomes


def test_outcomes_csv_keeps_numeric_looking_ids_as_text(tmp_path):
    cases = pd.DataFrame({"case_id": ["10", "2", "1"], "patient_id": ["1", "2", "1"], "image": ["a.nii"] * 3, "mask": ["m.nii"] * 3,
                          "modality": ["CT"] * 3, "image_sha256": ["x"] * 3, "label": [1, 0, 1], "os_time": [5.0, 7.5, 5.0],
                          "is_evaluation": [True, False, True]})
    cases.to_parquet(tmp_path / "cases.parquet", index=False)
    path = write_outcomes(tmp_path / "cases.parquet", tmp_path)
    back = read_csv_ids(path)
    assert list(back.columns) == ["case_id", "patient_id", "is_evaluation", "label", "os_time"]
    assert back["patient_id"].tolist() == ["1", "1", "2"] and back["case_id"].tolist() == ["1", "10", "2"]
    assert back["patient_id"].dtype == object  # plain pd.read_csv would give int64
    assert pd.read_csv(path)["patient_id"].dtype.kind == "i"
    # merges with the Parquet feature tables (ids as text) work
    feats = pd.DataFrame({"case_id": ["1", "10", "2"], "patient_id": ["1", "1", "2"], "latent_000": [0.1, 0.2, 0.3]})
    assert len(feats.merge(back, on=["case_id", "patient_id"])) == 3


def test_outcomes_without_evaluation_flag():
    t = outcomes_table(pd.DataFrame({"case_id": [1], "patient_id": [7], "age": [60]}))
    assert t.to_dict("records") == [{"case_id": "1", "patient_id": "7", "is_evaluation": False, "age": 60}]
