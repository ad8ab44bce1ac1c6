import pytest

from worker.catalog import ModelSpec

SHA = "ab" * 32


def spec(**kw):
    base = dict(key="ddpm-digits", format="diffusers", location="ddpm-digits", schedule="from_scheduler_config",
                prediction="from_scheduler_config", sample_shape=(1, 16, 16), sha256=SHA)
    return ModelSpec(**{**base, **kw})


def test_round_trip_every_format():
    specs = [
        spec(),
        spec(key="tiny", format="safetensors", location="nets/tiny.safetensors", schedule={"name": "edm", "T": 80.0, "t_min": 0.002},
             prediction="x0", architecture="tiny_conv", conditioning="class"),
        spec(key="gmm", format="analytic", location="gmm2d-edm", schedule="builtin", prediction="builtin", sample_shape=[2], sha256=None),
        spec(key="old", format="pickle", location="old.pt", schedule={"name": "flow"}, prediction="flow", architecture="tiny_conv"),
    ]
    for s in specs:
        d = s.to_dict()
        assert ModelSpec.from_dict(d) == s
        assert isinstance(d["sample_shape"], list)


def test_frozen():
    with pytest.raises(AttributeError):
        spec().key = "other"


@pytest.mark.parametrize(
    "kw, field, reason",
    [
        (dict(key="Bad Key"), "key", "lowercase"),
        (dict(format="onnx"), "format", "unknown format"),
        (dict(location="/abs/model"), "location", "absolute"),
        (dict(location="../outside"), "location", "escapes"),
        (dict(location="a/../../b"), "location", "escapes"),
        (dict(location=""), "location", "non-empty"),
        (dict(schedule={"name": "karras"}), "schedule", "unknown noise schedule"),
        (dict(format="safetensors", architecture="tiny_conv", schedule="from_scheduler_config", prediction="eps"), "schedule", "not valid"),
        (dict(prediction="score"), "prediction", "unknown prediction"),
        (dict(schedule={"name": "edm"}, prediction="flow"), "prediction", "flow"),
        (dict(sample_shape=(1, 0, 16)), "sample_shape", "positive"),
        (dict(sample_shape=()), "sample_shape", "positive"),
        (dict(conditioning="audio"), "conditioning", "unknown conditioning"),
        (dict(sha256=None), "sha256", "required"),
        (dict(sha256="xyz"), "sha256", "hex"),
        (dict(format="safetensors", schedule={"name": "edm"}, prediction="x0"), "architecture", "required"),
        (dict(architecture="tiny_conv"), "architecture", "only"),
    ],
)
def test_validation_names_field_and_reason(kw, field, reason):
    with pytest.raises(ValueError, match=rf"'{field}'.*{reason}"):
        spec(**kw)


def test_from_dict_rejects_unknown_and_missing_fields():
    d = spec().to_dict()
    with pytest.raises(ValueError, match="'weights'.*unknown field"):
        ModelSpec.from_dict({**d, "weights": "x"})
    del d["location"]
    with pytest.raises(ValueError, match="'location'.*missing"):
        ModelSpec.from_dict(d)


def test_catalog_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, worker.catalog; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
