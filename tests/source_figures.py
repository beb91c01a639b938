"""Figures that Markdown cells may quote without a committed output backing them: the source chapter's own
figures (always labelled 「教科書」 in the prose) and design constants a notebook states. One entry per notebook
stem; tests/test_prose_figures.py reads this list."""

SOURCE_FIGURES: dict[str, list[str]] = {
    "00_setup": [],
    "01_lifecycle_and_deployment_patterns": [],
    "02_flask_inference_api": [],
    "03_fastapi_inference_api": [],
    "04_model_serialization": [],
    "05_image_classification_api": [],
}
