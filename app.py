"""The workbench frame: page config, navigation over pages/, and the sidebar's active-run badge."""

import streamlit as st

st.set_page_config(page_title="RLHF Workbench", page_icon="🧭", layout="wide")
st.title("RLHF Workbench")
st.write("The pipeline is available from the command line: `python -m pipelines --help`.")
