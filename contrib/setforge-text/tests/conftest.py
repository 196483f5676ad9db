import pytest

from setforge_text.data import write_sample


@pytest.fixture
def texts_csv(tmp_path):
    return write_sample(tmp_path / "texts.csv")
