import json
import urllib.request

from streamlit.testing.v1 import AppTest

from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME


def app() -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.run()
    return at


def test_home_shows_bundled_datasets():
    at = app()
    assert not at.exception
    assert at.title[0].value == "fm_engine design workbench"
    table = at.dataframe[0].value
    assert {"bulk_modulus", "glass_forming", "hea_phase", "yield_strength"} <= set(table["task"])
    assert "GPa" in set(table["unit"])


def test_data_page_browses_every_dataset_and_task():
    at = app()
    at.switch_page("../pages/data.py").run()
    assert not at.exception
    for dataset in at.selectbox[0].options:
        at.selectbox[0].select(dataset).run()
        for task in at.selectbox[1].options:
            at.selectbox[1].select(task).run()
            assert not at.exception, (dataset, task)
            assert int(at.metric[0].value.replace(",", "")) > 0


def test_real_server_renders_home_without_error(streamlit_server):
    request = urllib.request.Request(
        f"{streamlit_server}/_stcore/agent/interact", data=b"{}", headers={"Content-Type": "application/json"}
    )
    tree = json.loads(urllib.request.urlopen(request, timeout=CEILING_S).read())
    text = json.dumps(tree)
    assert tree["status"] == "ready", text[:2000]
    assert "fm_engine design workbench" in text
    assert "bulk_modulus" in text
    assert '"exception"' not in text
