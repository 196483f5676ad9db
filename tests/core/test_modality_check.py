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


def test_a_step_that_cannot_take_the_loaded_data_is_refused_before_any_step(tmp_path, capsys):
    # (an npz source may give any modality: the run stopped at the step, exit 3, after the steps
    # before it had run)
    import numpy as np

    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).random((40, 1, 8, 8)).astype("float32"),
             y=np.arange(40) % 2)
    path = tmp_path / "run.yaml"
    path.write_text("source: {name: npz, params: {path: data.npz}}\n"
                    "pipeline: [{augment: flip}, {augment: feature-noise}]\n"
                    f"output: {{dir: {tmp_path / 'out'}}}\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "pipeline[1].augment: augment 'feature-noise' accepts tabular data, and source 'npz' gives image data" \
        in capsys.readouterr().err
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pipeline[1].augment: augment 'feature-noise' accepts tabular data" in err and "pipeline[0]" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
