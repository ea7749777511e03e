"""Image classification tasks: the second article's linear model, DeepOBS's MLP and CNNs.

Each dataset is held whole as one float tensor on the run's device, standardised with the training
split's per-channel mean and std (or, ``task.normalize=half``, as the second article's
``Normalize((0.5,), (0.5,))``: pixels from [0, 1] to [-1, 1]); batches are index slices of a seeded
permutation (no DataLoader). A fixed validation split (``task.val_size`` images, chosen by
``task.data_seed``) is held out of the training set, the same for every optimizer and seed;
``task.val_size=0`` trains on the whole training set (no validation split: for a recipe, not a tuning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..data import generated_images, load_images
from ..errors import ConfigError
from .base import Data, Selection, Split, Task, batched, register
from .pool import MaxPool2d


class ImageTask(Task):
    dataset: str  # torchvision class name
    shape: tuple[int, int, int]
    selection = Selection("val", "accuracy", "max")
    options = {"val_size": int, "train_size": (int, type(None)), "test_size": (int, type(None)),
               "data_seed": int, "normalize": (str, type(None))}

    def __init__(self, cfg):
        super().__init__({"normalize": None, **cfg})  # (runs made before the option: standardised)
        if self.cfg["normalize"] not in (None, "half"):
            raise ConfigError("task.normalize must be half or null (standardised), "
                              f"got {self.cfg['normalize']!r}")

    def load_data(self, data_cfg: Mapping[str, Any], device: torch.device) -> Data:
        if data_cfg.get("generated"):  # as many examples as the splits ask for (train: 3x val if unset)
            n_train = self.cfg["val_size"] + (self.cfg["train_size"] or 3 * (self.cfg["val_size"] or 1000))
            train_x, train_y, test_x, test_y = generated_images(
                self.shape, n_train=n_train, n_test=self.cfg["test_size"] or self.cfg["val_size"] or 1000,
                seed=self.cfg["data_seed"],
            )
        else:
            train_x, train_y, test_x, test_y = load_images(
                self.dataset, data_cfg["root"], data_cfg.get("source"), bool(data_cfg.get("download"))
            )
        n_val = self.cfg["val_size"]
        if not 0 <= n_val < len(train_x):
            raise ConfigError(f"task.val_size must be in [0, {len(train_x)}), got {n_val}")
        perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.cfg["data_seed"]))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        for key, have in (("train_size", len(train_idx)), ("test_size", len(test_x))):
            if self.cfg[key] is not None and not 0 < self.cfg[key] <= have:
                raise ConfigError(f"task.{key} must be in [1, {have}] or null, got {self.cfg[key]}")
        # Optional subsets (smoke tests, CPU profiles): the first examples of the fixed split.
        train_idx = train_idx[: self.cfg["train_size"]]
        test_x, test_y = test_x[: self.cfg["test_size"]], test_y[: self.cfg["test_size"]]
        if self.cfg["normalize"] == "half":  # the second article's Normalize((0.5,), (0.5,))
            mean, std = torch.tensor(0.5), torch.tensor(0.5)
        else:
            x = train_x[train_idx].float().div_(255)
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = x.std(dim=(0, 2, 3), keepdim=True)

        def split(images: Tensor, labels: Tensor) -> Split:
            return Split(((images.float() / 255 - mean) / std).to(device), labels.long().to(device))

        return Data(
            train=split(train_x[train_idx], train_y[train_idx]),
            val=split(train_x[val_idx], train_y[val_idx]) if n_val else None,
            test=split(test_x, test_y),
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)

    def member_losses(self, output: Tensor, target: Tensor) -> Tensor:
        per_example = nn.functional.cross_entropy(output.flatten(0, -2), target.flatten(), reduction="none")
        return per_example.view(target.shape).mean(-1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int, data: Data) -> dict[str, float]:
        def sums(x: Tensor, y: Tensor) -> Tensor:
            out = model(x)
            ce = nn.functional.cross_entropy(out, y, reduction="sum")
            return torch.stack([ce, (out.argmax(1) == y).sum().to(ce.dtype)])

        loss_sum, correct = batched(sums, split, batch_size).tolist()  # one host sync per split
        return {"loss": loss_sum / len(split), "accuracy": correct / len(split)}


def _init(model: nn.Module, weight, bias: float) -> nn.Module:
    """Apply DeepOBS's initialisation (Schneider et al. 2019) to every conv and dense layer."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            weight(m)
            nn.init.constant_(m.bias, bias)
    return model


def _trunc_normal(std: float):
    """Truncated normal at +-2 std, as TensorFlow's truncated_normal_initializer."""
    return lambda m: nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)


def _xavier(m: nn.Module) -> None:
    """DeepOBS 3c3d: Xavier-normal conv kernels, Xavier-uniform dense weights."""
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_normal_(m.weight)
    else:
        nn.init.xavier_uniform_(m.weight)


@register
class MnistLogReg(ImageTask):
    """Softmax regression on MNIST: Linear(784, 10) (the article's Linear(1024, 10) fixed)."""

    name, dataset, shape = "mnist_logreg", "MNIST", (1, 28, 28)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # torch's default init


DEEPOBS_MLP_HIDDEN = (1000, 500, 100)


@register
class MnistMLP(ImageTask):
    """DeepOBS mnist_mlp: 784-1000-500-100-10 with ReLU (as DeepOBS's TensorFlow version), weights
    truncated-normal (std 0.03), biases 0. ``task.hidden`` (a list of widths; null = DeepOBS's) changes
    the hidden layers, for the width sweep (experiment=width_sweep)."""

    name, dataset, shape = "mnist_mlp", "MNIST", (1, 28, 28)
    options = {**ImageTask.options, "hidden": (list, type(None))}

    def __init__(self, cfg):
        super().__init__(cfg)
        hidden = self.cfg["hidden"]
        if hidden is not None and not (hidden and all(
                isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden)):
            raise ConfigError(f"task.hidden must be a non-empty list of positive ints or null, "
                              f"got {hidden!r}")

    def build_model(self) -> nn.Module:
        widths = [784, *(self.cfg["hidden"] or DEEPOBS_MLP_HIDDEN), 10]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return _init(nn.Sequential(*layers), _trunc_normal(0.03), 0.0)


def two_conv_two_dense(channels: int = 1, width: float = 1.0) -> nn.Module:
    """DeepOBS 2c2d: conv5x5(32, same)-ReLU-maxpool2-conv5x5(64, same)-ReLU-maxpool2-fc1024-ReLU-fc10,
    weights truncated-normal (std 0.05), biases 0.05. ``width`` multiplies the 32, 64 and 1024 (a
    CPU-sized network at width < 1; 1 is DeepOBS's)."""
    c1, c2, fc = (max(1, round(n * width)) for n in (32, 64, 1024))
    return _init(nn.Sequential(
        nn.Conv2d(channels, c1, 5, padding=2), nn.ReLU(), MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * c2, fc), nn.ReLU(), nn.Linear(fc, 10),
    ), _trunc_normal(0.05), 0.05)


class ConvTask(ImageTask):
    """An image task whose network convolves. ``task.memory_format`` (null: PyTorch's default layout;
    ``channels_last``) lays out the network's weights, and so its activations, channels last: the same
    network and, within float rounding, the same numbers, from other kernels (on a CPU, convolutions and
    max-pools markedly faster: ``make bench``, section layout). A run records it in its config."""

    options = {**ImageTask.options, "memory_format": (str, type(None))}

    def __init__(self, cfg):
        super().__init__({"memory_format": None, **cfg})  # (runs made before the option: the default)
        if self.cfg["memory_format"] not in (None, "channels_last"):
            raise ConfigError("task.memory_format must be channels_last or null (PyTorch's default), "
                              f"got {self.cfg['memory_format']!r}")

    def network(self) -> nn.Module:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        net = self.network()  # a convolution with channels-last weights makes its output channels last too
        return net.to(memory_format=torch.channels_last) if self.cfg["memory_format"] else net


class TwoConvTwoDense(ConvTask):
    """DeepOBS's 2c2d network on a 28x28 grey-scale dataset; ``task.width`` (null = 1, DeepOBS's)
    multiplies its channels and its hidden dense layer."""

    options = {**ConvTask.options, "width": (float, type(None))}

    def __init__(self, cfg):
        super().__init__({"width": None, **cfg})  # (runs made before the option)
        width = self.cfg["width"]
        if width is not None and not 0 < width <= 1:
            raise ConfigError(f"task.width must be in (0, 1] or null, got {width!r}")

    def network(self) -> nn.Module:
        return two_conv_two_dense(width=self.cfg["width"] or 1.0)


@register
class MnistCNN(TwoConvTwoDense):
    """DeepOBS mnist_2c2d."""

    name, dataset, shape = "mnist_cnn", "MNIST", (1, 28, 28)


@register
class FmnistCNN(TwoConvTwoDense):
    """DeepOBS fmnist_2c2d: the same network on Fashion-MNIST."""

    name, dataset, shape = "fmnist_cnn", "FashionMNIST", (1, 28, 28)


@register
class Cifar10CNN(ConvTask):
    """DeepOBS cifar10_3c3d: conv5x5(64, valid)-pool-conv3x3(96, valid)-pool-conv3x3(128, same)-pool
    -fc512-fc256-fc10, ReLU, max-pools 3x3 stride 2. TF's asymmetric 'same' pool padding is replaced by
    symmetric padding 1, which gives the same shapes (28->14, 12->6, 6->3)."""

    name, dataset, shape = "cifar10_cnn", "CIFAR10", (3, 32, 32)

    def network(self) -> nn.Module:
        return _init(nn.Sequential(
            nn.Conv2d(3, 64, 5), nn.ReLU(), MaxPool2d(3, 2, padding=1),
            nn.Conv2d(64, 96, 3), nn.ReLU(), MaxPool2d(3, 2, padding=1),
            nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(), MaxPool2d(3, 2, padding=1),
            nn.Flatten(), nn.Linear(3 * 3 * 128, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10),
        ), _xavier, 0.0)
