"""Strict configs: unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

import json

import pytest

from biomd_core.config import ConfigError, ModelConfig, TrainingConfig, from_dict, load_config, to_dict


def test_round_trip():
    cfg = ModelConfig()
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_unknown_nested_key_names_its_path():
    with pytest.raises(ConfigError, match="network.*c_singel"):
        from_dict(ModelConfig, {"network": {"c_singel": 3}})


def test_wrong_type_and_invalid_values():
    with pytest.raises(ConfigError, match="n_heads"):
        from_dict(ModelConfig, {"network": {"n_heads": "four"}})
    with pytest.raises(ConfigError, match="parameterization"):
        from_dict(ModelConfig, {"flow": {"parameterization": "polar"}})
    with pytest.raises(ConfigError, match="task"):
        from_dict(TrainingConfig, {"task_weights": {"forcast": 1.0}})
    # values that trained nothing (steps 0 wrote random weights), flipped the gradients or diverged the average
    for key, value, message in (("steps", 0, "training.steps must be at least 1, got 0"),
                                ("batch_size", -2, "training.batch_size must be at least 1"),
                                ("grad_clip", -1.0, "training.grad_clip must be positive"),
                                ("ema_decay", 1.5, r"training.ema_decay must be in \[0, 1\)"),
                                ("lr", "fast", "'lr' must be a number, got 'fast'")):
        with pytest.raises(ConfigError, match=message):
            from_dict(TrainingConfig, {key: value})
    # NaN and infinite numbers are named where they are (lr: .inf had been a non-finite gradient blamed on the
    # data, after the run's first files; coord_scale_nm: .nan the same at step 0)
    with pytest.raises(ConfigError, match="training.lr must be a finite number, got inf"):
        from_dict(TrainingConfig, {"lr": float("inf")})
    with pytest.raises(ConfigError, match="flow.coord_scale_nm must be a finite number, got nan"):
        from_dict(ModelConfig, {"flow": {"coord_scale_nm": float("nan")}})


def test_yaml_and_json_files(tmp_path):
    (tmp_path / "m.yaml").write_text("time:\n  frame_interval_ps: 2\n  coarse_stride: 5\n")
    cfg = load_config(tmp_path / "m.yaml")
    assert cfg.time.coarse_interval_ps == 10.0
    (tmp_path / "bad.json").write_text(json.dumps({"flow": {"oops": 1}}))
    with pytest.raises(ConfigError, match="oops"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"flow": {"bond_weight": 0.')  # was a bare JSONDecodeError
    with pytest.raises(ConfigError, match=r"cut.json is not valid JSON: "):
        load_config(tmp_path / "cut.json")
    (tmp_path / "tab.yaml").write_text("time:\n\tframe_interval_ps: 2\n")  # was a bare yaml ScannerError
    with pytest.raises(ConfigError, match=r"tab.yaml is not valid YAML: "):
        load_config(tmp_path / "tab.yaml")
