"""Dashboard entry point: ``streamlit run app/streamlit_app.py``.

One frame for every page (page config, the page list, the API status in the sidebar); the
pages themselves live in ``app/app_pages/`` and talk to the API only through ``app.client``.
"""

from __future__ import annotations

import streamlit as st

from app import layout

st.set_page_config(
    page_title="Road accident severity",
    page_icon="🚦",
    layout="wide",
    initial_sidebar_state="expanded",
    menu_items={"About": "Predicts whether a French road accident is severe, from the BAAC open data (ONISR)."},
)

PAGES = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/insights:", url_path="overview", default=True),
    st.Page("app_pages/evaluation.py", title="Model evaluation", icon=":material/rule:", url_path="evaluation"),
    st.Page("app_pages/what_if.py", title="What-if", icon=":material/tune:", url_path="what-if"),
    st.Page("app_pages/batch.py", title="Batch scoring", icon=":material/upload_file:", url_path="batch"),
    st.Page("app_pages/monitoring.py", title="Monitoring", icon=":material/monitoring:", url_path="monitoring"),
]

current = st.navigation(PAGES)
layout.sidebar(layout.api_status())
current.run()
