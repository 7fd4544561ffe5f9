"""Plotly figures of the dashboard (no Streamlit calls here), one module per chart family.

Every figure shares one look (``style``): white background, the same two colours for "severe"
and "not severe", percentages for probabilities and rates, thousands separators for counts.
"""
