import pytest

from repsr.config import load_config, preset_names, read_config_dict
from repsr.errors import RepsrError


def base(tmp_path, **changes):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    data = {"data_root": str(tmp_path), "scale": 2, "data": {"train": {"paths": ["imgs"]}}}
    data.update(changes)
    return data


def test_presets_load_and_validate():
    names = preset_names()
    assert "demo" in names
    for scale in (2, 3, 4):
        for size in ("m4c16", "m10c32", "m16c64"):
            assert f"repsr_x{scale}_{size}" in names
    for name in names:
        config = load_config(name, check_paths=False)
        assert config.name == name
    big = load_config("repsr_x4_m16c64", check_paths=False)
    assert (big.scale, big.network.num_block, big.network.num_feat) == (4, 16, 64)
    assert big.data.train.paths == ["T91", "BSD200"] and big.data.val.paths == ["Set5", "Set14", "B100"]


def test_overrides_are_yaml_typed(tmp_path):
    config = load_config(base(tmp_path), ["train.total_iter=123", "train.bn.switch=null", "data.color=y",
                                          "train.optimizer.betas=[0.8, 0.9]"])
    assert config.train.total_iter == 123 and config.train.bn.switch is None
    assert config.data.color == "y" and config.train.optimizer.betas == [0.8, 0.9]
    assert config.switch_iteration() is None
    assert load_config(base(tmp_path), ["train.bn.switch=0.75", "train.total_iter=100"]).switch_iteration() == 75
    assert load_config(base(tmp_path), ["train.bn.switch=60", "train.total_iter=100"]).switch_iteration() == 60


@pytest.mark.parametrize(("opt", "message"), [
    ("train.totl_iter=5", "unknown config key train.totl_iter; did you mean train.total_iter?"),
    ("train.total_iter=many", "config key train.total_iter: expected integer, got 'many'"),
    ("train.total_iter=0", "config key train.total_iter: must be >= 1"),
    ("data.train.batch_size=-2", "config key data.train.batch_size: must be >= 1"),
    ("network.num_feat=0", "config key network.num_feat: must be >= 1"),
    ("train.bn.switch=20000", "config key train.bn.switch: iteration 20000 is not before the last iteration"),
    ("data.color=lab", "config key data.color: expected 'rgb' | 'y', got 'lab'"),
    ("network.block=fancy", "config key network.block: unknown block 'fancy'"),
    ("data.val.paths=[nowhere]", "config key data.val.paths[0]: folder"),
    ("train.use_bn=true", "unknown config key train.use_bn"),
    ("scale=true", "config key scale: expected integer, got True"),
])
def test_mistakes_are_rejected_with_the_key_named(tmp_path, opt, message):
    with pytest.raises(RepsrError) as info:
        load_config(base(tmp_path), [opt])
    assert message in str(info.value)


def test_missing_config_and_bad_yaml(tmp_path):
    with pytest.raises(RepsrError, match="neither a config file nor a preset"):
        read_config_dict("no_such_preset")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(RepsrError, match="bad.yml: invalid YAML"):
        read_config_dict(str(bad))


def test_data_root_comes_from_the_environment_unless_given(monkeypatch, tmp_path):
    from repsr.config import load_config

    monkeypatch.setenv("REPSR_DATA_ROOT", str(tmp_path))
    config = load_config("demo", check_paths=False)
    assert config.data_root == str(tmp_path) and config.data_path("T91") == tmp_path / "T91"
    assert load_config("demo", ["data_root=/elsewhere"], check_paths=False).data_root == "/elsewhere"
    monkeypatch.delenv("REPSR_DATA_ROOT")
    assert load_config("demo", check_paths=False).data_root == "../shared/datasets"  # relative to the current folder
