"""Golden values for tests/model_golden.rs, from the PyTorch reference of the CIFAR ResNets.

The net is akamaster's `resnet.py` (pytorch_resnet_cifar10), restated compactly: option A pads
the subsampled input with planes // 4 zero channels on each side, option B projects with a
1x1 conv + BN. Run from the repository root (needs torch and safetensors):

    python tests/golden/make_golden.py

It writes, for resnet20 (option A) and resnet8 (option B):
  <net>.safetensors     the state dict, BN statistics set to non-trivial values
  <net>_io.safetensors  input [2, 3, 32, 32], labels, eval-mode logits, then after one
                        training-mode forward + cross-entropy backward: train logits, loss,
                        a few gradients and updated running statistics
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        self.pad = None
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.pad = planes // 4
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is not None:
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)
        else:
            sc = self.shortcut(x)
        return F.relu(out + sc)


class ResNet(nn.Module):
    def __init__(self, n, option, num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1, option)
        self.layer2 = self._make_layer(32, n, 2, option)
        self.layer3 = self._make_layer(64, n, 2, option)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes, n, stride, option):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        return self.linear(out)


def make(name, n, option, seed):
    torch.manual_seed(seed)
    net = ResNet(n, option)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    here = os.path.dirname(os.path.abspath(__file__))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, f"{here}/{name}.safetensors")

    x = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([3, 7])
    net.eval()
    with torch.no_grad():
        eval_logits = net(x)
    net.train()
    train_logits = net(x)
    loss = F.cross_entropy(train_logits, labels)
    loss.backward()
    io = {
        "input": x,
        "labels": labels,
        "eval_logits": eval_logits,
        "train_logits": train_logits.detach(),
        "loss": loss.detach().reshape(1),
        "grad.conv1.weight": net.conv1.weight.grad,
        "grad.layer2.0.conv1.weight": net.layer2[0].conv1.weight.grad,
        "grad.layer3.0.bn1.weight": net.layer3[0].bn1.weight.grad,
        "grad.linear.weight": net.linear.weight.grad,
        "grad.linear.bias": net.linear.bias.grad,
        "after.bn1.running_mean": net.bn1.running_mean,
        "after.bn1.running_var": net.bn1.running_var,
        "after.layer3.0.bn2.running_var": net.layer3[0].bn2.running_var,
    }
    if option == "B":
        io["grad.layer2.0.shortcut.0.weight"] = net.layer2[0].shortcut[0].weight.grad
    save_file({k: v.contiguous() for k, v in io.items()}, f"{here}/{name}_io.safetensors")
    params = sum(p.numel() for p in net.parameters())
    print(f"{name} (option {option}): {params} parameters, eval logits[0] = {eval_logits[0, :3].tolist()}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("resnet20", 3, "A", seed=20)
    make("resnet8", 1, "B", seed=8)
