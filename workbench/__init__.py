"""The Streamlit design workbench (``streamlit run workbench/Home.py``)."""
