"""Data: browse the bundled datasets (rows, units, distributions, element coverage)."""

import pandas as pd
import plotly.express as px
import streamlit as st

from fm_engine.datasets import bundled_datasets

st.title("Bundled datasets")

datasets = {dataset.name: dataset for dataset in bundled_datasets()}
name = st.selectbox("Dataset", list(datasets), format_func=lambda n: f"{n}: {datasets[n].title}")
dataset = datasets[name]
st.markdown(dataset.description)
st.markdown(f"**Source:** {dataset.source}  \n**License:** {dataset.license}  \n**Cite:** {dataset.citation}")

task = st.selectbox("Task", dataset.tasks, format_func=lambda t: f"{t.name} ({t.unit or t.type})")
frame: pd.DataFrame = task.frame()
left, right = st.columns([1, 1])
with left:
    st.metric("Rows", f"{len(frame):,}")
    st.metric("Compositions", f"{frame['composition'].nunique():,}")
    st.dataframe(frame.head(500), hide_index=True, height=360)
with right:
    label = f"{task.name} ({task.unit})" if task.unit else task.name
    if task.type == "classification":
        counts = frame[task.data_column].value_counts().rename_axis("class").reset_index(name="count")
        figure = px.bar(counts, x="class", y="count", title=f"{task.name}: class counts")
    elif task.t_column:
        curves = frame[frame["composition"].isin(frame["composition"].drop_duplicates().head(12))]
        figure = px.line(
            curves,
            x=task.t_column,
            y=task.data_column,
            color="composition",
            markers=True,
            labels={task.t_column: f"{task.t_column} ({task.t_unit})", task.data_column: label},
            title=f"{task.name}: first 12 curves",
        )
    else:
        figure = px.histogram(frame, x=task.data_column, nbins=60, labels={task.data_column: label})
        figure.update_layout(title=f"{task.name}: distribution", yaxis_title="compositions")
    st.plotly_chart(figure, width="stretch")
