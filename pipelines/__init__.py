"""Everything that trains or generates. Never imports streamlit; the UI starts it through `python -m pipelines`."""
