import pytest
import torch
import torchvision

from seglib.models import MODELS, ResNet34UNet, UNet, build_model, count_parameters
from seglib.models.resnet34_unet import load_encoder_weights

SIZES = [(572, 572), (257, 311), (100, 100), (64, 37), (33, 33)]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("hw", SIZES)
def test_logits_at_input_resolution_for_any_size(name, hw):
    kwargs = {"base_channels": 4} if name == "unet" else {}
    model = build_model(name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *hw))
    assert out.shape == (1, 1, *hw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_num_classes_and_in_channels(name):
    kwargs = {"base_channels": 4} if name == "unet" else {}
    model = build_model(name, in_channels=1, num_classes=3, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 80)).shape == (2, 3, 64, 80)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_reaches_every_parameter(name):
    kwargs = {"base_channels": 4} if name == "unet" else {}
    model = build_model(name, **kwargs)
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_unet_has_the_original_parameter_count():
    assert count_parameters(UNet()) == 31_037_633


def test_unet_base_channels_scales_every_width():
    small = UNet(base_channels=16)
    assert small.inc[0].out_channels == 16 and small.down4[1][3].out_channels == 256
    assert count_parameters(small) < count_parameters(UNet()) / 10


def test_unet_dropout_acts_in_training_only_and_adds_no_parameters():
    torch.manual_seed(0)
    plain, dropped = UNet(base_channels=4), UNet(base_channels=4, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # the same weights: dropout is no parameter
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropped.eval()(x))
        dropped.train()
        assert not torch.equal(dropped(x), dropped(x))  # a new mask each call


def test_resnet34_unet_parameter_count():
    # encoder 21,284,672 (torchvision resnet34 without fc) + decoder and head
    model = ResNet34UNet()
    assert count_parameters(model.encoder) == 21_284_672
    assert count_parameters(model) == 24_459_745


def test_resnet34_unet_base_channels_narrows_every_width_but_keeps_the_depth():
    wide, narrow = ResNet34UNet(), ResNet34UNet(base_channels=16)
    assert narrow.encoder.channels == (16, 16, 32, 64, 128)
    assert len(list(narrow.modules())) == len(list(wide.modules()))  # the same blocks, narrower
    # every conv but the head's last layers scales with the width squared (the stem's with the width)
    assert 24_459_745 / 17 < count_parameters(narrow) < 24_459_745 / 15
    with torch.no_grad():
        assert narrow.eval()(torch.randn(1, 3, 75, 61)).shape == (1, 1, 75, 61)


def test_encoder_loads_torchvision_resnet34_strictly():
    tv = torchvision.models.resnet34().state_dict()
    model = ResNet34UNet()
    model.encoder.load_state_dict({k: v for k, v in tv.items() if not k.startswith("fc.")}, strict=True)
    assert torch.equal(model.encoder.layer3[5].conv2.weight, tv["layer3.5.conv2.weight"])


def test_encoder_computes_what_torchvision_resnet34_computes():
    """Loaded with torchvision's weights, the encoder's five maps are torchvision's stem and stages (the
    maxpool, the residual sums): what ImageNet weights were trained to see."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet34().eval()
    encoder = ResNet34UNet().encoder.eval()
    encoder.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        stem = tv.relu(tv.bn1(tv.conv1(x)))
        want = [stem, tv.layer1(tv.maxpool(stem))]
        for layer in (tv.layer2, tv.layer3, tv.layer4):
            want.append(layer(want[-1]))
        got = encoder(x)
    assert [tuple(m.shape[-2:]) for m in got] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_unet_drops_out_both_deepest_maps():
    """dropout acts on the outputs of down3 and down4 (whole channels), as the docstring says."""
    model = UNet(base_channels=4, dropout=0.5).train()
    seen = {}
    for name in ("down3", "down4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    zeroed = {}
    model.dropout.register_forward_hook(lambda m, i, o: zeroed.__setitem__(id(i[0]), (o == 0).all((2, 3))))
    torch.manual_seed(0)
    with torch.no_grad():
        model(torch.randn(2, 3, 48, 48))
    assert {id(seen["down3"]), id(seen["down4"])} <= set(zeroed)
    assert all(z.any() for z in zeroed.values())  # some whole channels dropped in each


def test_encoder_weights_from_a_file(tmp_path):
    tv = torchvision.models.resnet34().state_dict()  # random weights stand in for ImageNet's here
    torch.save(tv, tmp_path / "resnet34.pth")
    model = build_model("resnet34_unet", encoder_weights=tmp_path / "resnet34.pth")
    assert torch.equal(model.encoder.conv1.weight, tv["conv1.weight"])
    assert torch.equal(model.encoder.bn1.running_var, tv["bn1.running_var"])


def test_imagenet_weights_offline_fail_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached copy
    encoder = ResNet34UNet().encoder
    with pytest.raises(RuntimeError, match="internet access"):
        load_encoder_weights(encoder, "imagenet", url="http://127.0.0.1:9/resnet34-b627a593.pth")


def test_bad_encoder_weights_and_model_names():
    with pytest.raises(FileNotFoundError, match="neither 'imagenet' nor an existing file"):
        ResNet34UNet(encoder_weights="no/such/file.pth")
    with pytest.raises(ValueError, match=r"unknown model 'segformer'.*resnet34_unet.*unet"):
        build_model("segformer")
    with pytest.raises(ValueError, match="base_channels"):
        UNet(base_channels=0)
    with pytest.raises(ValueError, match="base_channels"):
        ResNet34UNet(base_channels=0)
    with pytest.raises(ValueError, match=r"encoder_weights need .*base_channels=64"):
        ResNet34UNet(encoder_weights="imagenet", base_channels=32)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        UNet(base_channels=4, dropout=1.0)
