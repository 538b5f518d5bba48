"""DEFR losses (LSE-Sign and the others) on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raysweep.errors import ConfigError
from raysweep.tasks.defr.losses import build_loss, focal_loss, lse_sign_loss, wbce_pos_weight

EPS64 = float(np.finfo(np.float64).eps)


def test_lse_sign_hand_computed():
    # y = (+1, -1, -1): -y*s = (-2, -1, 0.5)
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    expected = math.log(1 + math.exp(-2) + math.exp(-1) + math.exp(0.5))
    loss = lse_sign_loss(logits, targets)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_lse_sign_gradient_is_signed_softmax():
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    lse_sign_loss(logits, targets).sum().backward()
    y = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    z = torch.cat([torch.zeros(1, dtype=torch.float64), -y * logits.detach()[0]])
    expected = -y * torch.softmax(z, dim=0)[1:]
    torch.testing.assert_close(logits.grad[0], expected, rtol=0, atol=1e-12)
    assert logits.grad.abs().sum().item() < 1.0  # softmax-normalised: total magnitude below 1


def test_lse_sign_is_stable_for_large_logits_and_averages_over_images():
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 0.0]])
    targets = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    per_image = lse_sign_loss(logits, targets)
    assert per_image[0].item() == pytest.approx(1000.0 + math.log(2.0), rel=1e-6)  # log(1 + 2 e^1000)
    assert per_image[1].item() == pytest.approx(math.log(2.0), abs=1e-6)  # log(1 + e^-1000 + e^0)
    assert build_loss("lse_sign")(logits, targets).item() == pytest.approx(per_image.mean().item())


def test_lse_sign_does_not_modify_logits():
    logits = torch.tensor([[1.0, 2.0]])
    lse_sign_loss(logits, torch.tensor([[1.0, 0.0]]))
    assert logits.tolist() == [[1.0, 2.0]]


def test_bce_mean_over_all_elements():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2.0) + math.log(1 + math.exp(2.0))) / 2
    assert build_loss("bce")(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_wbce_pos_weight_formula():
    targets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    w = wbce_pos_weight(targets)
    assert w.dtype == torch.float64
    assert w.tolist() == [3 / (1 + EPS64), 2 / (2 + EPS64), 4 / EPS64]
    assert torch.equal(wbce_pos_weight(torch.from_numpy(targets)), w)


def test_wbce_weights_positive_terms_only():
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    w = wbce_pos_weight(targets)  # (3, 1) up to eps
    logits = torch.tensor([[0.0, 1.0]])
    batch_targets = torch.tensor([[1.0, 0.0]])
    # class 0 positive: w0 * -log sigmoid(0); class 1 negative: -log(1 - sigmoid(1)) = log(1 + e)
    expected = (3.0 * math.log(2.0) + math.log(1 + math.e)) / 2
    assert build_loss("wbce", pos_weight=w)(logits, batch_targets).item() == pytest.approx(expected, rel=1e-6)


def test_focal_hand_computed():
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # p = 0.5: positive alpha (0.5)^2 log 2; negative (1 - alpha) (0.5)^2 log 2
    elements = focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert elements[0, 0].item() == pytest.approx(0.25 * 0.25 * math.log(2.0), rel=1e-6)
    assert elements[0, 1].item() == pytest.approx(0.75 * 0.25 * math.log(2.0), rel=1e-6)
    assert build_loss("focal")(logits, targets).item() == pytest.approx(0.25 * math.log(2.0) / 2, rel=1e-6)


def test_focal_gamma_zero_is_alpha_weighted_bce_and_large_logits_stay_finite():
    logits = torch.tensor([[1.5, -0.5]])
    targets = torch.tensor([[1.0, 0.0]])
    got = build_loss("focal", focal_alpha=0.5, focal_gamma=0.0)(logits, targets).item()
    assert got == pytest.approx(0.5 * build_loss("bce")(logits, targets).item(), rel=1e-6)
    big = focal_loss(torch.tensor([[100.0]]), torch.tensor([[0.0]]))
    assert big.item() == pytest.approx(0.75 * 100.0, rel=1e-6)  # (1-alpha) * sigmoid(100)^2 * 100


def test_build_loss_rejects_unknown_name_and_missing_weight():
    with pytest.raises(ConfigError, match="did you mean 'bce'"):
        build_loss("bse")
    with pytest.raises(ValueError, match="pos_weight"):
        build_loss("wbce")
