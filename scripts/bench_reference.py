#!/usr/bin/env python3
"""The reference side of `synthscan bench --reference`: the same network in PyTorch (eager,
channels-last) and ONNX Runtime, timed on the same machine with the same thread count.

synthscan passes the network as its model configuration (JSON, the `arch` of a model file), so
both sides build the same layers from one description:

    bench_reference.py --arch '{"arch":"cnn",...}' --input-size 32 \
        --measure train:256,infer:1,infer:64,infer:256,ort:256,evaluate:256,ortevaluate:256 [--data DIR]

Prints one JSON object per measurement on stdout:
    {"what": "train", "batch": 256, "framework": "pytorch", "img_per_s": 1234.5, "n": 10}
Anything else (errors, warnings) goes to stderr. Needs torch; ORT rows need onnxruntime + onnx.
Not used by tests or CI: it is a benchmark aid (torch is several GB).
"""
import argparse
import json
import os
import statistics
import sys
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(THREADS)
torch.manual_seed(0)


def act(name):
    return {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}[name]()


class GlobalPool(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        if self.kind == "max":
            return torch.amax(x, dim=(2, 3))
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        return x.flatten(1)


def head(features, hidden, dropout, pool, activation):
    layers = [GlobalPool(pool)]
    dims = [features] + list(hidden)
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Dropout(dropout), nn.Linear(a, b), act(activation)]
    layers += [nn.Dropout(dropout), nn.Linear(dims[-1], 2)]
    return layers


def cnn(c, size):
    """synthscan's plain CNN (model::init_cnn): conv → (max-pool) → BN → activation units."""
    k, bn, a = c.get("kernel", 3), c.get("batch_norm", True), c.get("activation", "relu")

    def unit(cin, cout, pool, stride):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=not bn)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        return layers + [act(a)]

    layers, ch, stride = [], 3, c.get("stem_stride", 1)
    if c.get("stem", 0) > 0:
        layers += unit(3, c["stem"], False, stride)
        ch = c["stem"]
    spatial = -(-size // stride)
    for st in c["stages"]:
        for j in range(st.get("convs", 1)):
            layers += unit(ch if j == 0 else st["channels"], st["channels"], j == 0 and st.get("pool", True), 1)
        ch = st["channels"]
        spatial //= 2 if st.get("pool", True) else 1
    pool = c.get("global_pool", "max")
    features = ch * spatial * spatial if pool == "flatten" else ch
    return nn.Sequential(*layers, *head(features, c.get("hidden", []), c.get("dropout", 0.0), pool, a))


class MbConv(nn.Module):
    def __init__(self, cin, cout, k, stride, e):
        super().__init__()
        mid = cin * e
        layers = []
        if e != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, eps=1e-3), nn.ReLU6()]
        layers += [nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                   nn.BatchNorm2d(mid, eps=1e-3), nn.ReLU6(),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


# (repeats, kernel, stride, expand, c_in, c_out): model::efficientnet::LITE0.
LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
         (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def efficientnet(c):
    layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU6()]
    for reps, k, s, e, cin, cout in LITE0:
        for r in range(reps):
            layers.append(MbConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
    layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6()]
    return nn.Sequential(*layers, *head(1280, c.get("hidden", []), c.get("dropout", 0.0), "avg", "relu"))


def build(arch, size):
    kind = arch["arch"]
    if kind == "cnn":
        return cnn(arch, size)
    if kind == "efficientnet":
        return efficientnet(arch)
    raise SystemExit(f"bench_reference: no reference for arch '{kind}'")


def timed(step, min_iters, min_secs, warm=2):
    for _ in range(warm):
        step()
    times, t0 = [], time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - t0 < min_secs and len(times) < 1000):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def train_rate(model, size, batch, args):
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    model.train()
    # The default experiment's optimiser (and synthscan bench's): SGD, Nesterov momentum 0.9.
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    med, n = timed(step, args.min_iters, args.min_secs)
    return batch / med, n


def infer_rate(model, size, batch, args):
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    model.eval()

    def step():
        with torch.inference_mode():
            model(x)[0, 0].item()

    med, n = timed(step, args.min_iters, args.min_secs)
    return batch / med, n


def ort_session(model, size):
    import onnxruntime as ort
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"synthscan-ref-{os.getpid()}.onnx")
    model.eval()
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model.to(memory_format=torch.contiguous_format), (x,), path,
                      input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    os.remove(path)
    return sess


def ort_rate(sess, size, batch, args):
    x = torch.randn(batch, 3, size, size).numpy()
    med, n = timed(lambda: sess.run(None, {"x": x}), args.min_iters, args.min_secs)
    return batch / med, n


def folder_files(root):
    if os.path.isdir(os.path.join(root, "test")):
        root = os.path.join(root, "test")
    return [os.path.join(root, c, f) for c in ("REAL", "FAKE") for f in sorted(os.listdir(os.path.join(root, c)))]


def ort_evaluate_rate(sess, size, args, batch=16):
    """What a user would write with ONNX Runtime and Pillow: a thread per core decodes (Pillow
    releases the GIL), each JPEG through `draft` (libjpeg's DCT-domain 1/2–1/8 scaling, to the
    smallest scale that keeps both sides at least `size`), resized to `size`×`size` (bilinear),
    normalised as synthscan's real-world model is (ImageNet mean and deviation); ORT scores
    batches of 16 while the threads decode the next ones. Timed from the file list to the last
    score."""
    from concurrent.futures import ThreadPoolExecutor
    from PIL import Image
    import numpy as np

    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    files = folder_files(args.data)

    def load(path):
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
        return ((a - mean) / std).transpose(2, 0, 1)

    t0 = time.perf_counter()
    n = 0
    with ThreadPoolExecutor(THREADS) as pool:
        images = pool.map(load, files)
        while True:
            chunk = [x for _, x in zip(range(batch), images)]
            if not chunk:
                break
            sess.run(None, {"x": np.stack(chunk)})
            n += len(chunk)
    return n / (time.perf_counter() - t0), 1


def evaluate_rate(model, size, batch, args):
    """A user's PyTorch + Pillow evaluation of a REAL/FAKE folder: DataLoader workers decode and
    resize, the model scores; timed from the file list to the last score."""
    from PIL import Image
    import numpy as np

    files = folder_files(args.data)

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
            return torch.from_numpy((a - 0.5) / 0.25).permute(2, 0, 1)

    model.eval()
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(Folder(), batch_size=batch, num_workers=THREADS)
    n = 0
    with torch.inference_mode():
        for x in loader:
            model(x.contiguous(memory_format=torch.channels_last))
            n += len(x)
    return n / (time.perf_counter() - t0), 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True, help="the model's arch configuration as JSON")
    p.add_argument("--input-size", type=int, required=True)
    p.add_argument("--measure", required=True, help="comma-separated what:batch")
    p.add_argument("--data", help="labelled folder for evaluate")
    p.add_argument("--min-iters", type=int, default=5)
    p.add_argument("--min-secs", type=float, default=2.0)
    args = p.parse_args()
    arch, size = json.loads(args.arch), args.input_size
    model = build(arch, size).to(memory_format=torch.channels_last)
    sess = None
    for item in args.measure.split(","):
        what, batch = item.split(":")
        batch = int(batch)
        if what == "train":
            rate, n = train_rate(model, size, batch, args)
            fw = "pytorch"
        elif what == "infer":
            rate, n = infer_rate(model, size, batch, args)
            fw = "pytorch"
        elif what == "ort":
            sess = sess or ort_session(build(arch, size), size)
            rate, n = ort_rate(sess, size, batch, args)
            fw = "onnxruntime"
        elif what == "evaluate":
            if not args.data:
                raise SystemExit("bench_reference: evaluate needs --data")
            rate, n = evaluate_rate(model, size, batch, args)
            fw = "pytorch+pillow"
        elif what == "ortevaluate":
            if not args.data:
                raise SystemExit("bench_reference: ortevaluate needs --data")
            sess = sess or ort_session(build(arch, size), size)
            rate, n = ort_evaluate_rate(sess, size, args)
            fw = "onnxruntime+pillow-draft"
        else:
            raise SystemExit(f"bench_reference: unknown measurement '{what}'")
        print(json.dumps({"what": what, "batch": batch, "framework": fw, "img_per_s": rate, "n": n}), flush=True)


if __name__ == "__main__":
    main()
