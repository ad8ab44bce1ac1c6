import pytest

from registry.catalog import ModelSpec

SHA = "ab" * 32


def spec(**kw):
    base = dict(key="ddpm-digits", format="diffusers", location="ddpm-digits", schedule="from_scheduler_config",
                prediction="from_scheduler_config", sample_shape=(1, 16, 16), sha256=SHA)
    return ModelSpec(**{**base, **kw})


def test_round_trip_every_format():
    specs = [
        spec(),
        spec(key="tiny", format="safetensors", location="nets/tiny.safetensors", schedule={"name": "edm", "T": 80.0, "t_min": 0.002},
             prediction="x0", architecture="tiny_conv"),
        spec(key="cond", conditioning="class", num_classes=10, null_class=10),
        spec(key="latent", location="latent", sample_shape=(4, 8, 8), image_shape=[1, 32, 32]),
        spec(key="sd-tiny", location="sd-tiny", sample_shape=(4, 4, 4), image_shape=(3, 8, 8), conditioning="text"),
        spec(key="gmm", format="analytic", location="gmm2d-edm", schedule="builtin", prediction="builtin", sample_shape=[2], sha256=None),
        spec(key="old", format="pickle", location="old.pt", schedule={"name": "flow"}, prediction="flow", architecture="tiny_conv"),
    ]
    for s in specs:
        d = s.to_dict()
        assert ModelSpec.from_dict(d) == s
        assert isinstance(d["sample_shape"], list)
        assert d["image_shape"] is None or isinstance(d["image_shape"], list)
    assert specs[3].image_shape == (1, 32, 32)


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
        (dict(location="ddpm\x00digits"), "location", "NUL"),
        (dict(format="analytic", location="gmm3d-edm", schedule="builtin", prediction="builtin", sha256=None, sample_shape=[2]),
         "location", "built-in name; known: .*gmm2d-edm"),
        (dict(format="analytic", location="gmm2d-edm", schedule="builtin", prediction="builtin", sha256=None, sample_shape=[64]),
         "sample_shape", "samples \\[2\\]"),
        (dict(format="analytic", location="gmm2d-edm", schedule={"name": "edm"}, prediction="eps", sample_shape=[2]),
         "prediction", "analytic models predict 'x0'"),
        (dict(format="safetensors", schedule={"name": "edm"}, prediction="x0", architecture="resnet9"), "architecture", "unknown"),
        (dict(format="pickle", schedule={"name": "edm"}, prediction="x0", architecture="tiny_conv", conditioning="class",
              num_classes=10, null_class=10), "conditioning", "unconditional"),
        (dict(schedule={"name": "edm", "sigma_max": 80}, format="safetensors", prediction="x0", architecture="tiny_conv"),
         "schedule", "takes \\['T', 't_min'\\]"),
        (dict(schedule={"name": "vp_linear", "beta_max": "20"}, format="safetensors", prediction="eps", architecture="tiny_conv"),
         "schedule", "finite number"),
        (dict(schedule={"name": "vp_discrete", "alphas_cumprod": [0.9, 0.95]}, format="safetensors", prediction="eps",
              architecture="tiny_conv"), "schedule", "strictly decreasing"),
        (dict(sample_shape=(1, 16, 100_000)), "sample_shape", "too large"),
        (dict(sample_shape=(4096, 4096, 16)), "sample_shape", "too large"),
        (dict(sample_shape=(1,) * 9), "sample_shape", "too large"),
        (dict(conditioning="class", num_classes=10**9, null_class=10**9), "num_classes", "at most 1000000"),
        (dict(conditioning="class", num_classes=10, null_class=2**40), "null_class", "at most 1000000"),
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
        (dict(conditioning="class", null_class=10), "num_classes", "required"),
        (dict(conditioning="class", num_classes=10), "null_class", "required"),
        (dict(conditioning="class", num_classes=0, null_class=10), "num_classes", "positive integer"),
        (dict(conditioning="class", num_classes=True, null_class=10), "num_classes", "positive integer"),
        (dict(conditioning="class", num_classes=10, null_class=-1), "null_class", "non-negative"),
        (dict(conditioning="class", num_classes=10, null_class=3), "null_class", "one of the classes 0..9"),
        (dict(num_classes=10), "num_classes", "only class-conditional"),
        (dict(conditioning="text", null_class=0), "null_class", "only class-conditional"),
        (dict(image_shape=(1, 0, 32)), "image_shape", "positive"),
        (dict(image_shape=5), "image_shape", "sequence of positive integers"),
        (dict(format="safetensors", architecture="tiny_conv", schedule={"name": "edm"}, prediction="x0", image_shape=(1, 8, 8)),
         "image_shape", "only latent diffusers"),
        (dict(guard_features="inception"), "guard_features", "unknown feature map"),
    ],
)
def test_validation_names_field_and_reason(kw, field, reason):
    with pytest.raises(ValueError, match=rf"'{field}'.*{reason}"):
        spec(**kw)


def test_the_catalog_entries_of_the_shipped_models_validate():
    cfg = ModelSpec.from_dict({"key": "digits-cfg", "format": "diffusers", "location": "digits-cfg", "schedule": "from_scheduler_config",
                               "prediction": "from_scheduler_config", "sample_shape": [1, 16, 16], "conditioning": "class",
                               "num_classes": 10, "null_class": 10, "sha256": SHA})
    assert (cfg.num_classes, cfg.null_class, cfg.image_shape) == (10, 10, None)
    latent = ModelSpec.from_dict({**cfg.to_dict(), "key": "digits-latent", "conditioning": "none", "num_classes": None,
                                  "null_class": None, "sample_shape": [4, 8, 8], "image_shape": [1, 32, 32]})
    assert latent.sample_shape == (4, 8, 8) and latent.image_shape == (1, 32, 32)


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

    code = "import sys, registry.catalog; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_architectures_and_builtins_are_the_workers_and_ld3cores():
    from ld3core.models import builtin_names, load_builtin
    from registry.catalog import ARCHITECTURES, BUILTIN_SHAPES
    from worker.architectures import ARCHITECTURES as WORKER_ARCHITECTURES

    assert set(ARCHITECTURES) == set(WORKER_ARCHITECTURES)
    assert set(BUILTIN_SHAPES) == set(builtin_names())
    for name, shape in BUILTIN_SHAPES.items():
        assert load_builtin(name).sample_shape == shape, name


def test_every_spec_the_catalog_accepts_for_an_analytic_model_loads():
    from registry.catalog import BUILTIN_SHAPES
    from worker.loaders import load_model

    for name, shape in BUILTIN_SHAPES.items():
        for prediction in ("x0", "builtin"):
            s = spec(key="gmm", format="analytic", location=name, schedule="builtin", prediction=prediction,
                     sample_shape=shape, sha256=None)
            assert load_model(s, "/nonexistent").sample_shape == shape
