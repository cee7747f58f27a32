"""The data-model document shows the model as the code defines it."""

from pathlib import Path

from crm_platform.contracts.entities import markdown


def test_data_model_doc_matches_the_model():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data-model.md").read_text()
    assert markdown() in doc, "docs/data-model.md is out of date: re-render it from crm_platform.contracts.entities.markdown()"
