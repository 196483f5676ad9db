"""A component that cannot take the source's data is a run-file problem, found before any work."""

from setforge.tools.cli import main


def test_image_components_on_a_tabular_source_are_refused_by_validate(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("source: sklearn-breast-cancer\npreprocess: [resize]\n"
                    "pipeline: [{augment: flip}, {resample: smote}]\nevaluate: [utility]\n"
                    f"output: {{dir: {tmp_path / 'out'}}}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "preprocess[0]: preprocess 'resize' accepts image data, and source 'sklearn-breast-cancer'" in err
    assert "pipeline[0].augment: augment 'flip' accepts image data" in err
    assert "pipeline[1]" not in err and "evaluate[0]" not in err  # smote and utility take tables
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_source_of_several_modalities_leaves_the_check_to_the_data(tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).random((20, 3)).astype("float32"),
             y=np.arange(20) % 2)
    path = tmp_path / "run.yaml"
    path.write_text("source: {name: npz, params: {path: data.npz}}\npipeline: [{augment: flip}]\n")
    assert main(["validate", str(path)]) == 0
