import pytest

torch = pytest.importorskip("torch", reason="training extras (torch) not installed")

from fer_ros.learning.models import ARCHS, Classifier, build_model, count_macs, count_params  # noqa: E402

# trainable / total (Keras counting: batch norm adds running mean and variance), see fer_ros/learning/models.py
COUNTS = {"arch1": (292_863, 293_951), "arch2": (1_141_375, 1_142_463),
          "arch3": (304_719, 305_807), "arch4": (1_153_231, 1_154_319)}


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_match_the_papers_arithmetic(arch):
    assert count_params(build_model(arch)) == COUNTS[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_softmax(arch):
    model = build_model(arch).eval()
    logits = model(torch.rand(3, 1, 48, 48))
    assert logits.shape == (3, 7)
    probs = Classifier(model)(torch.rand(3, 1, 48, 48))
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)


def test_classes_and_channels_are_configurable():
    model = build_model("arch1", n_classes=8, in_channels=3).eval()
    assert model(torch.rand(2, 3, 48, 48)).shape == (2, 8)


def test_multiply_accumulates_per_face():
    macs = {arch: count_macs(build_model(arch)) for arch in ARCHS}
    assert macs["arch1"] == pytest.approx(20.8e6, rel=0.01)
    assert macs["arch1"] < macs["arch2"] < macs["arch3"] < macs["arch4"]  # separable convs save the most


def test_separable_convs_only_in_arch1_and_arch2():
    def grouped(m):
        return any(isinstance(x, torch.nn.Conv2d) and x.groups > 1 for x in m.modules())

    assert grouped(build_model("arch1")) and grouped(build_model("arch2"))
    assert not grouped(build_model("arch3")) and not grouped(build_model("arch4"))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="arch1, arch2, arch3, arch4"):
        build_model("resnet50")
